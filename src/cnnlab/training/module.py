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
    def __init__(self, model: nn.Module, optimizer: str = "adam", lr: float = 1e-3,
                 weight_decay: float = 0.0, schedule: str = "none") -> None:
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"trainer.optimizer={optimizer!r}: choose one of {sorted(OPTIMIZERS)}")
        if schedule not in SCHEDULES:
            raise ConfigError(f"trainer.schedule={schedule!r}: choose one of {SCHEDULES}")
        self.model = model
        self.optimizer_name, self.lr, self.weight_decay = optimizer, lr, weight_decay
        self.schedule = schedule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(as_model_input(x))

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
