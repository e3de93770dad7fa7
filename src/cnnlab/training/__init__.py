"""One training loop for every dataset: in-memory tensor batches, one LightningModule."""
