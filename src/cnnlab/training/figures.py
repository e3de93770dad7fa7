"""The pictures a training run shows in the dashboard: its curves and its confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from cnnlab.training.batches import TensorBatches, as_model_input


def confusion_matrix(model: nn.Module, batches: TensorBatches, n_classes: int) -> torch.Tensor:
    """Counts [true class, predicted class] over every batch."""
    counts = torch.zeros(n_classes, n_classes, dtype=torch.long)
    model.eval()
    with torch.no_grad():
        for x, y in batches:
            predicted = model(as_model_input(x)).argmax(dim=1)
            counts += torch.bincount(y * n_classes + predicted, minlength=n_classes ** 2
                                     ).view(n_classes, n_classes)
    return counts


def save_curves(rows: Sequence[Mapping[str, float]], title: str, path: Path) -> Path:
    """Loss and accuracy per epoch, training and validation side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, measure in zip(axes, ("loss", "acc"), strict=True):
        for split in ("train", "val"):
            ax.plot(epochs, [r.get(f"{split}_{measure}") for r in rows], marker="o", label=split)
        ax.set_xlabel("epoch")
        ax.set_title({"loss": "cross-entropy", "acc": "accuracy"}[measure])
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_confusion(counts: torch.Tensor, classes: Sequence[str], title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * n, 0.8 + 0.45 * n))
    ax.imshow(counts.numpy(), cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90 if max(map(len, classes)) > 2 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = int(counts.max()) if counts.numel() else 0
    for i in range(n):
        for j in range(n):
            value = int(counts[i, j])
            ax.text(j, i, value, ha="center", va="center", fontsize=7,
                    color="white" if value > peak / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
