"""Tile grids of greyscale images, written pixel for pixel so that their geometry is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

PAD_RGB = (40, 90, 160)  # grid padding: a colour no grey tile pixel can have


def grid_shape(n: int, ncols: int) -> tuple[int, int]:
    """Rows and columns of a grid of n tiles at most ncols wide."""
    cols = max(1, min(n, ncols))
    return (n + cols - 1) // cols, cols


def tile_grid(images: torch.Tensor, ncols: int, pad: int = 1, scale: int = 1,
              normalise: bool = True) -> np.ndarray:
    """Greyscale images [N, 1, H, W] as one RGB uint8 grid: tile i at row i // ncols, column
    i % ncols; `pad` pixels of PAD_RGB around tiles, then every pixel repeated `scale` times.

    With `normalise` each tile is stretched to its own full range (filter images differ in
    contrast); without, values are shown as they are, 0 black and 1 white.
    """
    if images.dim() == 3:
        images = images[:, None]
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"tile_grid needs [N, 1, H, W] images, got {list(images.shape)}")
    x = images[:, 0].detach().float().cpu()
    if normalise:
        low = x.amin(dim=(1, 2), keepdim=True)
        span = (x.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-8)
        x = (x - low) / span
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    n, h, w = x.shape
    rows, cols = grid_shape(n, ncols)
    grid = np.empty((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), dtype=np.uint8)
    grid[:] = PAD_RGB
    for i in range(n):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        grid[top:top + h, left:left + w] = x[i][..., None]
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return grid


def save_png(path: Path, rgb: np.ndarray) -> None:
    import matplotlib.image

    matplotlib.image.imsave(path, rgb)
