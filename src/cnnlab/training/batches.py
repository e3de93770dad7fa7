"""Batches sliced from tensors held in memory: no per-sample Python in the hot loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # (batch, generator) -> batch


class TensorBatches:
    """An iterable of (x, y) batches; reshuffled per pass with a seeded generator.

    Pass k uses seed + k, so a run is reproducible and independent of anything else that
    draws random numbers; `augment` (training only) draws from its own seeded generator.

    `place` moves the tensors to the training device once per fit, and gives a rank of a
    multi-process run its shard: a shuffled pass is padded to a multiple of the world size
    and dealt round-robin, as torch's DistributedSampler does (every rank takes the same
    number of batches); an evaluation pass deals every sample to exactly one rank.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool,
                 seed: int = 0, augment: Augment | None = None) -> None:
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.passes = 0
        self.rank, self.world = 0, 1

    def place(self, device: torch.device, rank: int = 0, world: int = 1) -> None:
        self.x, self.y = self.x.to(device), self.y.to(device)
        self.rank, self.world = rank, world

    def _samples(self) -> int:
        n = len(self.y)
        if self.world == 1:
            return n
        return -(-n // self.world) if self.shuffle else len(range(self.rank, n, self.world))

    def __len__(self) -> int:
        return (self._samples() + self.batch_size - 1) // self.batch_size

    def _order(self) -> torch.Tensor | None:
        """Indices of this pass on this rank (None: all samples in order)."""
        n = len(self.y)
        order = None
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.passes)
            order = torch.randperm(n, generator=gen)
        if self.world == 1:
            return order
        if order is None:
            return torch.arange(self.rank, n, self.world)
        total = -(-n // self.world) * self.world
        padded = order.repeat(-(-total // n))[:total]
        return padded[self.rank::self.world]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        if order is not None:
            order = order.to(self.y.device)
        aug_gen = torch.Generator().manual_seed(10_000 + self.seed + self.passes + 7919 * self.rank)
        self.passes += 1
        for start in range(0, self._samples(), self.batch_size):
            if order is None:
                x, y = self.x[start:start + self.batch_size], self.y[start:start + self.batch_size]
            else:
                idx = order[start:start + self.batch_size]
                x, y = self.x[idx], self.y[idx]
            yield (x if self.augment is None else self.augment(as_model_input(x), aug_gen)), y


def as_model_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 images become floats in [0, 1]; floats and token ids pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x
