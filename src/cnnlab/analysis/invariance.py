"""Invariance: does the CNN still recognise a digit that moved, or that lost half its pixels?

Shift: every test digit moved by s pixels (s = 0..max_shift) in each configured direction,
vacated pixels black; accuracy at s is the mean over directions. The lecture's "the same
pattern can appear anywhere" predicts that the CNN loses less accuracy than the dense net.
Subsampling: each digit average-pooled by a factor, then restored to its size (nearest or
bilinear); "subsampling keeps the object" predicts accuracy stays close to the clean one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.analysis.ascent import shift
from cnnlab.analysis.trained import load_inputs
from cnnlab.core.claims import Claim, csv_text, markdown_table
from cnnlab.core.devices import resolve_device
from cnnlab.core.errors import ConfigError
from cnnlab.core.io import write_text
from cnnlab.core.threads import torch_threads

RESTORE_MODES = ("nearest", "bilinear")


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> float:
    """Share of `x` classified as `y` (batches small enough to stay in the CPU's cache)."""
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size])
            correct += int((logits.argmax(dim=1) == y[start:start + batch_size]).sum())
    return correct / len(x)


def subsample_restore(images: torch.Tensor, factor: int, mode: str) -> torch.Tensor:
    """Average-pool by `factor`, then upsample back to the original size."""
    if mode not in RESTORE_MODES:
        raise ConfigError(f"analysis.invariance.restore: {mode!r} is not one of {RESTORE_MODES}")
    small = F.avg_pool2d(images, factor)
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(small, size=images.shape[-2:], mode=mode, **kwargs)


def shift_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, max_shift: int,
                directions: Sequence[Sequence[int]]) -> list[dict[str, float]]:
    """Accuracy at each shift 0..max_shift, averaged over the directions (dy, dx)."""
    rows = [{"shift": 0, "accuracy": accuracy(model, x, y)}]
    for s in range(1, max_shift + 1):
        accs = [accuracy(model, shift(x, s * int(dy), s * int(dx)), y) for dy, dx in directions]
        rows.append({"shift": s, "accuracy": sum(accs) / len(accs)})
    return rows


@dataclass
class InvarianceConfig:
    """analysis.invariance (values in conf/analysis/invariance.yaml)."""

    cnn: str
    dense: str
    dataset: str
    max_test: int | None
    max_shift: int
    directions: list[list[int]]
    subsample: int
    restore: list[str]
    max_drop: float
    threads: int | None
    device: str


def check_cfg(cfg: Mapping[str, Any]) -> tuple[int, list[list[int]], int, list[str]]:
    max_shift = int(cfg["max_shift"])
    directions = [list(d) for d in cfg["directions"]]
    factor = int(cfg["subsample"])
    restore = list(cfg["restore"])
    if max_shift < 1:
        raise ConfigError(f"analysis.invariance.max_shift={max_shift}: must be at least 1")
    if not directions or any(len(d) != 2 or d == [0, 0] for d in directions):
        raise ConfigError("analysis.invariance.directions: give [dy, dx] pairs such as [0, 1], "
                          f"none [0, 0]; got {directions}")
    if factor < 2:
        raise ConfigError(f"analysis.invariance.subsample={factor}: must be at least 2")
    if not restore:
        raise ConfigError(f"analysis.invariance.restore: choose from {RESTORE_MODES}")
    return max_shift, directions, factor, restore


def run_invariance(cfg: Mapping[str, Any], checkpoints: Mapping[str, Path], data_dir: Path,
                   out_dir: Path, curves_dir: Path) -> tuple[dict[str, Any], list[Claim]]:
    """Accuracy under shifts and under subsample-restore for the CNN (checkpoints['cnn']) and
    the dense net (checkpoints['dense']).

    Writes `out_dir/{shift.png, subsample.csv, invariance.md}` and the shift curves
    `curves_dir/<experiment>.csv`; returns the metrics and the claims.
    """
    max_shift, directions, factor, restore = check_cfg(cfg)
    if set(checkpoints) != {"cnn", "dense"}:
        raise ConfigError(f"invariance compares a 'cnn' and a 'dense' model, got {sorted(checkpoints)}")
    curves: dict[str, list[dict[str, float]]] = {}
    subsampled: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    device = resolve_device(cfg["device"], "analysis.invariance.device")
    with torch_threads(cfg["threads"], "analysis.invariance.threads"):
        for role, path in checkpoints.items():
            inputs = load_inputs(path, data_dir, cfg["max_test"], device)
            name = names[role] = str(inputs.meta.get("experiment", path.parent.name))
            curves[role] = shift_curve(inputs.model, inputs.test_x, inputs.test_y, max_shift,
                                       directions)
            clean = curves[role][0]["accuracy"]
            for mode in restore:
                acc = accuracy(inputs.model, subsample_restore(inputs.test_x, factor, mode),
                               inputs.test_y)
                subsampled.append({"experiment": name, "role": role, "restore": mode,
                                   "clean": clean, "subsampled": acc, "drop": clean - acc})
            test_digits = len(inputs.test_x)
    metrics = invariance_metrics(curves, subsampled, names, test_digits, factor)
    claims = invariance_claims(metrics, names, max_shift, factor, float(cfg["max_drop"]))
    for role, rows in curves.items():
        write_text(curves_dir / f"{names[role]}.csv", csv_text(rows, ["shift", "accuracy"]))
    write_text(out_dir / "subsample.csv", csv_text(subsampled, list(subsampled[0])))
    save_shift_plot(out_dir / "shift.png", curves, names, len(directions))
    write_text(out_dir / "invariance.md", invariance_markdown(curves, subsampled, names, factor))
    return metrics, claims


def invariance_metrics(curves: Mapping[str, list[dict[str, float]]],
                       subsampled: Sequence[Mapping[str, Any]], names: Mapping[str, str],
                       test_digits: int, factor: int) -> dict[str, Any]:
    metrics: dict[str, Any] = {"test_digits": test_digits, "subsample": factor}
    for role, rows in curves.items():
        clean = rows[0]["accuracy"]
        shifted = [r["accuracy"] for r in rows[1:]]
        metrics[role] = {
            "experiment": names[role],
            "clean": clean,
            "max_shift_accuracy": shifted[-1],
            "mean_shift_drop": clean - sum(shifted) / len(shifted),
            "subsampled": {r["restore"]: r["subsampled"] for r in subsampled
                           if r["role"] == role},
        }
    return metrics


def invariance_claims(m: Mapping[str, Any], names: Mapping[str, str], max_shift: int,
                      factor: int, max_drop: float) -> list[Claim]:
    cnn, dense = m["cnn"], m["dense"]
    worst_mode = min(cnn["subsampled"], key=cnn["subsampled"].get)
    worst = cnn["subsampled"][worst_mode]
    return [
        Claim("The same pattern can appear anywhere: the CNN loses less accuracy than the "
              "dense net when digits are shifted", f"invariance {names['cnn']} vs {names['dense']}",
              f"mean accuracy drop over shifts 1..{max_shift} px: CNN {cnn['mean_shift_drop']:.3f}"
              f" vs dense {dense['mean_shift_drop']:.3f}; at {max_shift} px: CNN "
              f"{cnn['max_shift_accuracy']:.3f} vs dense {dense['max_shift_accuracy']:.3f}",
              cnn["mean_shift_drop"], bool(cnn["mean_shift_drop"] < dense["mean_shift_drop"])),
        Claim("Subsampling the pixels does not change the object: accuracy stays high",
              f"invariance {names['cnn']}",
              f"CNN accuracy after {factor}x average-pool and restore: "
              + ", ".join(f"{k} {v:.4f}" for k, v in cnn["subsampled"].items())
              + f" vs clean {cnn['clean']:.4f} (allowed drop {max_drop}); dense net: "
              + ", ".join(f"{k} {v:.4f}" for k, v in dense["subsampled"].items()),
              worst, bool(cnn["clean"] - worst <= max_drop)),
    ]


def invariance_markdown(curves: Mapping[str, list[dict[str, float]]],
                        subsampled: Sequence[Mapping[str, Any]], names: Mapping[str, str],
                        factor: int) -> str:
    shifts = [r["shift"] for r in curves["cnn"]]
    table = [{"shift (px)": s, **{names[role]: curves[role][i]["accuracy"] for role in curves}}
             for i, s in enumerate(shifts)]
    return ("# invariance: accuracy under shifts and subsampling\n\n"
            "Shift: accuracy on test digits moved by s pixels (mean over the directions).\n\n"
            + markdown_table(table, ["shift (px)", *[names[r] for r in curves]])
            + f"\nSubsampling: {factor}x average-pool, then restored to full size.\n\n"
            + markdown_table(subsampled, ["experiment", "restore", "clean", "subsampled",
                                          "drop"]))


def save_shift_plot(path: Path, curves: Mapping[str, list[dict[str, float]]],
                    names: Mapping[str, str], n_directions: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for role, rows in curves.items():
        ax.plot([r["shift"] for r in rows], [r["accuracy"] for r in rows], marker="o",
                label=f"{names[role]} ({role})")
    ax.set_xlabel("shift (pixels)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"Accuracy of shifted digits (mean of {n_directions} directions)", fontsize=10)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
