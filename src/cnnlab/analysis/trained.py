"""A trained model and the real test inputs it is compared with, checked to fit each other."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import DataError
from cnnlab.data.prepared import load_prepared
from cnnlab.training.batches import as_model_input
from cnnlab.training.checkpoint import load_checkpoint


@dataclass
class Inputs:
    model: nn.Module
    meta: dict[str, Any]
    test_x: torch.Tensor  # model inputs, floats in [0, 1]
    test_y: torch.Tensor


def load_inputs(checkpoint: Path, data_dir: Path, max_test: int | None = None,
                device: torch.device | str | None = None) -> Inputs:
    """The trained model and the test digits it is compared with, checked to fit each other,
    all on `device` (None: where the checkpoint loads them, the CPU)."""
    model, meta = load_checkpoint(checkpoint)
    test = load_prepared(data_dir).test
    x, y = test.x, test.y
    if max_test:
        x, y = x[:int(max_test)], y[:int(max_test)]
    if tuple(x.shape[1:]) != tuple(meta["input_shape"]):
        raise DataError(f"{data_dir}: test inputs have shape {list(x.shape[1:])}, but "
                        f"{checkpoint} expects {list(meta['input_shape'])}")
    if x.dtype != torch.uint8:
        raise DataError(f"{data_dir}: expected uint8 images, got {x.dtype}")
    return Inputs(model.to(device), meta, as_model_input(x.clone()).to(device), y.to(device))
