"""Training-time augmentation of image-like batches, drawn per batch from a seeded generator.

For spectrograms (frequency x time) this is the lecture's argument turned into data: a higher
or lower voice shifts the pattern along frequency, a faster or later word along time. `shift`
moves each example by up to (rows, columns) with zero fill; `mask` blanks one band of up to
that many rows and one of up to that many columns (SpecAugment). Zero is the neutral value of
inputs normalised to zero mean. All in tensor ops: no per-example Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from cnnlab.core.errors import ConfigError


def _pair(value: Any, key: str) -> tuple[int, int]:
    pair = [0, 0] if value is None else value
    try:
        rows, cols = (int(v) for v in pair)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"trainer.augment.{key}={value!r}: expected [rows, columns]") from exc
    if rows < 0 or cols < 0:
        raise ConfigError(f"trainer.augment.{key}={value!r}: must not be negative")
    return rows, cols


@dataclass(frozen=True)
class ShiftAndMask:
    shift: tuple[int, int] = (0, 0)
    mask: tuple[int, int] = (0, 0)

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any] | None) -> ShiftAndMask | None:
        """None when the config asks for nothing (absent, null or all zeros)."""
        if not cfg:
            return None
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"trainer.augment={cfg!r}: expected {{shift: [rows, columns], "
                              "mask: [rows, columns]}")
        unknown = set(cfg) - {"shift", "mask"}
        if unknown:
            raise ConfigError(f"trainer.augment: unknown keys {sorted(unknown)}; "
                              "use shift and mask")
        aug = cls(_pair(cfg.get("shift"), "shift"), _pair(cfg.get("mask"), "mask"))
        return aug if any(aug.shift + aug.mask) else None

    def check_input(self, shape: torch.Size) -> None:
        """Refuse data that is not image-like (e.g. token ids), before training starts."""
        if len(shape) != 4:
            raise ConfigError(f"trainer.augment needs image-like batches [B, C, H, W], got "
                              f"shape {list(shape)}")

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        self.check_input(x.shape)
        x = x.float()
        for axis, (most_shift, most_mask) in ((2, (self.shift[0], self.mask[0])),
                                              (3, (self.shift[1], self.mask[1]))):
            if most_shift:
                x = _shift_along(x, axis, most_shift, gen)
            if most_mask:
                x = _mask_along(x, axis, most_mask, gen)
        return x


def _shape_for(axis: int, b: int, n: int) -> tuple[int, ...]:
    return (b, 1, n, 1) if axis == 2 else (b, 1, 1, n)


def _shift_along(x: torch.Tensor, axis: int, most: int, gen: torch.Generator) -> torch.Tensor:
    """Each example moved by its own offset in [-most, most] along `axis`, zero filled."""
    b, n = x.shape[0], x.shape[axis]
    offset = torch.randint(-most, most + 1, (b, 1), generator=gen).to(x.device)
    source = torch.arange(n, device=x.device)[None, :] - offset  # [B, n]: where each output position reads
    inside = ((source >= 0) & (source < n)).to(x.dtype).view(_shape_for(axis, b, n))
    index = source.clamp(0, n - 1).view(_shape_for(axis, b, n)).expand_as(x)
    return x.gather(axis, index) * inside


def _mask_along(x: torch.Tensor, axis: int, most: int, gen: torch.Generator) -> torch.Tensor:
    """Each example gets one band of width in [0, most] set to zero along `axis`."""
    b, n = x.shape[0], x.shape[axis]
    width = torch.randint(0, min(most, n) + 1, (b, 1), generator=gen)
    start = (torch.rand((b, 1), generator=gen) * (n - width + 1)).floor().to(x.device)
    width = width.to(x.device)
    position = torch.arange(n, device=x.device)[None, :]
    keep = ~((position >= start) & (position < start + width))
    return x * keep.to(x.dtype).view(_shape_for(axis, b, n))
