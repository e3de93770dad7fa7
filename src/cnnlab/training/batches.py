"""Batches sliced from tensors held in memory: no per-sample Python in the hot loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # (batch, generator) -> batch


class TensorBatches:
    """An iterable of (x, y) batches; reshuffled per pass with a seeded generator.

    Pass k uses seed + k, so a run is reproducible and independent of anything else that
    draws random numbers; `augment` (training only) draws from its own seeded generator.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int = 0, augment: Augment | None = None) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.passes = 0

    def __len__(self) -> int:
        return (len(self.y) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.passes)
            order = torch.randperm(len(self.y), generator=gen)
        else:
            order = None
        aug_gen = torch.Generator().manual_seed(10_000 + self.seed + self.passes)
        self.passes += 1
        for start in range(0, len(self.y), self.batch_size):
            if order is None:
                x, y = self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
            else:
                idx = order[start:start + self.batch_size]
                x, y = self.x[idx], self.y[idx]
            yield (x if self.augment is None else self.augment(as_model_input(x), aug_gen)), y


def as_model_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 images become floats in [0, 1]; floats and token ids pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x
