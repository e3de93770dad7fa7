"""Accuracy against pitch shift: every trained speech model on the test clips moved up and down
the spectrum (data/prepared/<dataset>/test_pitch_shift.pt), one curve per model.

A filter that moves along frequency meets a shifted voice with the same weights, one step up
or down; a filter that spans every band at once sees a different pattern. The drop of a
model is its accuracy unshifted less its mean accuracy over the shifted clips.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cnnlab.core import paths
from cnnlab.core.claims import csv_text
from cnnlab.training.checkpoint import load_checkpoint


def accuracy_by_shift(checkpoint: Path, shifted: Mapping[str, torch.Tensor],
                      batch: int = 1000) -> list[float]:
    """The checkpoint's test accuracy at every shift of the grid."""
    model, _ = load_checkpoint(checkpoint)
    y = shifted["y"]
    accuracies = []
    with torch.no_grad():
        for x in shifted["x"]:
            right = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                        for i in range(0, len(y), batch))
            accuracies.append(right / len(y))
    return accuracies


def checkpoints(name: str, seeds: Sequence[int], models_dir: Path, seeds_dir: Path) -> list[Path]:
    """The first seed's checkpoint (train@<name>), then the seeds stage's."""
    return [paths.checkpoint(models_dir, name),
            *(paths.seed_checkpoint(seeds_dir, name, s) for s in seeds[1:])]


def pitch_curves(runs: Mapping[str, Mapping[str, list]], models_dir: Path, seeds_dir: Path,
                 shifted: Mapping[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    """Per experiment: the grid, and per seed the accuracy at every shift."""
    grid = [int(s) for s in shifted["semitones"]]
    return {name: {"semitones": grid, "seeds": list(run["seeds"]),
                   "accuracy": [accuracy_by_shift(path, shifted) for path in
                                checkpoints(name, run["seeds"], models_dir, seeds_dir)]}
            for name, run in runs.items()}


def drops(curve: Mapping[str, Any]) -> list[float]:
    """Per seed: accuracy unshifted less the mean accuracy over the shifted clips."""
    grid = curve["semitones"]
    zero = grid.index(0)
    return [acc[zero] - statistics.fmean(a for s, a in zip(grid, acc, strict=True) if s)
            for acc in curve["accuracy"]]


def mean_curve(curve: Mapping[str, Any]) -> list[float]:
    return [statistics.fmean(column) for column in zip(*curve["accuracy"], strict=True)]


def curves_csv(curves: Mapping[str, Mapping[str, Any]]) -> str:
    """semitones, experiment, accuracy (mean over seeds): `dvc plots`, one line per model."""
    rows = [{"semitones": s, "experiment": name, "accuracy": a}
            for name, curve in curves.items()
            for s, a in zip(curve["semitones"], mean_curve(curve), strict=True)]
    return csv_text(rows, ["semitones", "experiment", "accuracy"])


def save_figure(curves: Mapping[str, Mapping[str, Any]], path: Path, title: str) -> Path:
    """Accuracy against shift, one curve per model (mean over seeds, the seeds' range shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, curve in curves.items():
        grid = curve["semitones"]
        line, = ax.plot(grid, mean_curve(curve), marker="o",
                        label=f"{name} ({len(curve['accuracy'])} seed"
                              f"{'s' if len(curve['accuracy']) > 1 else ''})")
        columns = list(zip(*curve["accuracy"], strict=True))
        ax.fill_between(grid, [min(c) for c in columns], [max(c) for c in columns],
                        color=line.get_color(), alpha=0.15)
    ax.set_xlabel("pitch shift of the test clips (semitones)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
