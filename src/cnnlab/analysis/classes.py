"""Stage classes: for each class, an image that maximises its score, unconstrained and with few
ink pixels (L1); how confident the network is and how digit-like the images are."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.analysis.ascent import AscentSettings, ascend, build_terms, unit_objective
from cnnlab.analysis.grids import save_png, tile_grid
from cnnlab.analysis.trained import load_inputs
from cnnlab.core.claims import Claim, csv_text, markdown_table
from cnnlab.core.devices import resolve_device
from cnnlab.core.errors import DataError
from cnnlab.core.io import save_torch, write_text
from cnnlab.core.threads import torch_threads


@dataclass
class ClassesConfig:
    """analysis.classes (values in conf/analysis/classes.yaml)."""

    experiment: str
    dataset: str
    max_test: int | None
    layer: str
    ink_threshold: float
    fooled_confidence: float
    ascent: dict[str, Any]  # AscentSettings keys and regularisers, shared by both variants
    unconstrained: dict[str, Any]  # overrides of `ascent` for each variant
    few_ink: dict[str, Any]
    scale: int
    threads: int | None
    device: str


def ink_fraction(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Fraction of pixels brighter than `threshold`: the ink of a binarised digit."""
    return (images > threshold).float().reshape(len(images), -1).mean(dim=1)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row Pearson correlation of a [N, ...] and b [N, ...] (0 where one is constant)."""
    a = a.reshape(len(a), -1).double()
    b = b.reshape(len(b), -1).double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denom = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(denom > 0, (a * b).sum(dim=1) / denom.clamp_min(1e-12),
                       torch.zeros_like(denom)).float()


def class_means(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    means = []
    for c in range(n_classes):
        members = x[y == c]
        if not len(members):
            raise DataError(f"no test digit of class {c}: cannot form its mean image")
        means.append(members.mean(dim=0))
    return torch.stack(means)


def measure_class_images(model: nn.Module, images: torch.Tensor, means: torch.Tensor,
                         ink_threshold: float) -> dict[str, torch.Tensor]:
    targets = torch.arange(len(images), device=images.device)
    with torch.no_grad():
        logits = model(images)
    return {"logit": logits[targets, targets],
            "confidence": logits.softmax(dim=1)[targets, targets],
            "ink_fraction": ink_fraction(images, ink_threshold),
            "mean_intensity": images.reshape(len(images), -1).mean(dim=1),
            "corr_mean_digit": pearson(images.cpu(), means.cpu())}  # float64: MPS has none


def run_classes(cfg: Mapping[str, Any], checkpoint: Path, data_dir: Path, out_dir: Path
                ) -> tuple[dict[str, Any], list[Claim]]:
    """Stage `classes`: for each class, an image maximising its score (logit) without and
    with the few-ink (L1) penalty; confidence, ink and likeness to the class's mean digit.

    Writes `out_dir/{classes.png, images.pt, classes.csv, classes.md}`; returns the metrics
    and the claims.
    """
    layer = str(cfg["layer"])
    threshold = float(cfg["ink_threshold"])
    variants = {"unconstrained": cfg["unconstrained"], "few_ink": cfg["few_ink"]}
    device = resolve_device(cfg["device"], "analysis.classes.device")
    with torch_threads(cfg["threads"], "analysis.classes.threads"):
        inputs = load_inputs(checkpoint, data_dir, cfg["max_test"], device)
        shape = tuple(inputs.meta["input_shape"])
        n_classes = len(inputs.meta["classes"])
        means = class_means(inputs.test_x, inputs.test_y, n_classes)
        real = measure_class_images(inputs.model, means, means, threshold)
        images, measured, seconds = {}, {}, {}
        for variant, vcfg in variants.items():
            merged, where = {**cfg["ascent"], **vcfg}, f"analysis.classes.{variant}"
            settings, terms = AscentSettings.from_cfg(merged, where), build_terms(merged, where)
            start = time.perf_counter()
            result = ascend(inputs.model, layer, unit_objective(range(n_classes)), n_classes,
                            shape, settings, terms)
            seconds[variant] = time.perf_counter() - start
            images[variant] = result.images.cpu()
            measured[variant] = {k: v.cpu() for k, v in measure_class_images(
                inputs.model, result.images, means, threshold).items()}
        real = {k: v.cpu() for k, v in real.items()}
        means = means.cpu()
    classes = list(inputs.meta["classes"])
    rows = [{"class": classes[c], "images": variant,
             **{k: float(v[c]) for k, v in m.items()}}
            for variant, m in [*measured.items(), ("class_mean_digit", real)]
            for c in range(n_classes)]
    summary = {variant: {"min_confidence": float(m["confidence"].min()),
                         "mean_confidence": float(m["confidence"].mean()),
                         "ink_fraction": float(m["ink_fraction"].mean()),
                         "mean_intensity": float(m["mean_intensity"].mean()),
                         "corr_mean_digit": float(m["corr_mean_digit"].mean()),
                         "seconds": round(seconds[variant], 3)}
               for variant, m in measured.items()}
    summary["class_mean_digit"] = {"ink_fraction": float(real["ink_fraction"].mean()),
                                   "mean_intensity": float(real["mean_intensity"].mean())}
    experiment = str(inputs.meta.get("experiment", checkpoint.parent.name))
    claims = class_claims(experiment, summary, float(cfg["fooled_confidence"]), threshold)
    panel = torch.cat([images["unconstrained"], images["few_ink"], means])
    save_png(out_dir / "classes.png", tile_grid(panel, n_classes, normalise=False,
                                                scale=int(cfg["scale"])))
    save_torch(out_dir / "images.pt", images)
    write_text(out_dir / "classes.csv", csv_text(rows, list(rows[0])))
    write_text(out_dir / "classes.md", classes_markdown(experiment, rows, summary, threshold))
    return {**summary, "ink_threshold": threshold}, claims


def class_claims(experiment: str, s: Mapping[str, Mapping[str, float]], fooled: float,
                 threshold: float) -> list[Claim]:
    free, few = s["unconstrained"], s["few_ink"]
    where = f"classes {experiment}"
    return [
        Claim(f"An image that maximises a class score without constraint fools the network "
              f"(confidence >= {fooled:.0%})", where,
              f"softmax confidence in the target class: min {free['min_confidence']:.4f}, "
              f"mean {free['mean_confidence']:.4f} over the classes; correlation with the "
              f"class's mean digit {free['corr_mean_digit']:.2f}",
              free["min_confidence"], bool(free["min_confidence"] >= fooled)),
        Claim("Penalising ink (L1, 'few ink pixels') gives class images with less ink", where,
              f"ink fraction (pixels > {threshold}) {few['ink_fraction']:.3f} with the penalty "
              f"vs {free['ink_fraction']:.3f} without; mean intensity "
              f"{few['mean_intensity']:.3f} vs {free['mean_intensity']:.3f}",
              few["ink_fraction"], bool(few["ink_fraction"] < free["ink_fraction"])),
        Claim("With few ink pixels the class images look more like digits", where,
              f"correlation with the class's mean test digit {few['corr_mean_digit']:.3f} "
              f"with the penalty vs {free['corr_mean_digit']:.3f} without; confidence "
              f"still min {few['min_confidence']:.4f}",
              few["corr_mean_digit"], bool(few["corr_mean_digit"] > free["corr_mean_digit"])),
    ]


def classes_markdown(experiment: str, rows: list[dict[str, Any]],
                     summary: Mapping[str, Mapping[str, float]], threshold: float) -> str:
    table = [{"images": k, **v} for k, v in summary.items()]
    return (f"# classes: images that maximise each class score of {experiment}\n\n"
            "`classes.png`: row 1 unconstrained, row 2 with the few-ink (L1) penalty, row 3 "
            "the mean test digit of the class; columns are the classes in order, shown as "
            f"they are (0 black, 1 white). Ink fraction: share of pixels > {threshold}; "
            "corr_mean_digit: Pearson correlation with the class's mean test digit.\n\n"
            + markdown_table(table, ["images", "min_confidence", "mean_confidence",
                                     "ink_fraction", "mean_intensity", "corr_mean_digit",
                                     "seconds"])
            + "\n" + markdown_table(rows, ["class", "images", "logit", "confidence",
                                           "ink_fraction", "corr_mean_digit"]))
