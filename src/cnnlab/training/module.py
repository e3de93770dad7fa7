"""The LightningModule shared by every experiment: cross-entropy classification."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.training.batches import as_model_input

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
              "adadelta": torch.optim.Adadelta}
SCHEDULES = ("none", "onecycle", "cosine")


class Classifier(L.LightningModule):
    # Deterministic mode (Lightning's deterministic=True) also fills every new tensor with NaN
    # by default, a guard against reading uninitialised memory: a dozen memsets per step, the
    # largest the size of the first activation map. No op here reads memory it did not write:
    # the lecture CNN's trained weights are bit-identical without the fill, reruns too; only
    # CPU time is saved (~5%). Off while this module fits or tests, restored after.
    fill_uninitialized_memory = False

    def __init__(self, model: nn.Module, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, schedule: str = "none",
                 channels_last: bool = False) -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"trainer.optimizer={optimizer!r}: choose one of {sorted(OPTIMIZERS)}")
        if schedule not in SCHEDULES:
            raise ConfigError(f"trainer.schedule={schedule!r}: choose one of {SCHEDULES}")
        # channels_last: NHWC activations and conv weights while fitting (oneDNN's convolutions
        # and pooling are faster so on a CPU); the same model and numbers up to float rounding
        self.channels_last = channels_last
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.optimizer_name, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.schedule = schedule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = as_model_input(x)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def setup(self, stage: str) -> None:
        self._filled = torch.utils.deterministic.fill_uninitialized_memory
        torch.utils.deterministic.fill_uninitialized_memory = self.fill_uninitialized_memory

    def teardown(self, stage: str) -> None:
        torch.utils.deterministic.fill_uninitialized_memory = getattr(self, "_filled", True)

    def on_fit_end(self) -> None:
        """The fitted model leaves in the usual layout: checkpoints and exports as always."""
        if self.channels_last:
            self.model.to(memory_format=torch.contiguous_format)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        # epoch means weighted by batch size; under DDP the sums and counts of every rank are
        # added before dividing, so each sample counts once whatever the world size
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=len(y),
                 sync_dist=True)
        self.log(f"{stage}_acc", acc, on_step=False, on_epoch=True, batch_size=len(y),
                 sync_dist=True)
        if stage != "train":
            self.log(f"{stage}_samples", float(len(y)), on_step=False, on_epoch=True,
                     reduce_fx="sum", sync_dist=True)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        """`lr` is the peak rate; onecycle warms up to it and anneals, stepping every batch."""
        optimizer = OPTIMIZERS[self.optimizer_name](self.parameters(), lr=self.lr,
                                                    weight_decay=self.weight_decay)
        if self.schedule == "none":
            return optimizer
        steps = int(self.trainer.estimated_stepping_batches)
        if self.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, self.lr, total_steps=steps)
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
