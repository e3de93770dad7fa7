"""What a trained network learned: the inputs that most excite its filters, neurons and classes.

Three results stages share this module. `run_units` (stages `filters` and `neurons`) finds,
for every unit of the chosen layers, the image that maximises its activation (filter: the
sum of its feature map after ReLU) and compares the activation reached with the highest one
any real test digit gives the unit. `run_classes` finds, for each class, an image that
maximises its score, once unconstrained and once with few ink pixels, and measures how
confident the network is and how digit-like the images are. Figures are tile grids written
pixel for pixel (one tile per unit, in unit order), so their geometry is exact.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.analysis.ascent import (
    AscentSettings,
    ascend,
    build_terms,
    layer_output_shape,
    leaky,
    max_over_inputs,
    relu,
    unit_objective,
)
from cnnlab.core.claims import Claim, markdown_table, write_claims
from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.io import atomic_dir, save_torch, write_json, write_text
from cnnlab.core.threads import torch_threads
from cnnlab.core.tracking import flatten

PAD_RGB = (40, 90, 160)  # grid padding: a colour no grey tile pixel can have
EXPERIMENT = "analysis"  # the MLflow experiment of every analysis stage


# --- grids -------------------------------------------------------------------------------

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


# --- what every analysis stage shares ------------------------------------------------------

@dataclass
class Inputs:
    model: nn.Module
    meta: dict[str, Any]
    test_x: torch.Tensor  # model inputs, floats in [0, 1]
    test_y: torch.Tensor


def load_inputs(checkpoint: Path, data_dir: Path, max_test: int | None = None) -> Inputs:
    """The trained model and the test digits it is compared with, checked to fit each other."""
    from cnnlab.data.prepared import load_prepared
    from cnnlab.training.batches import as_model_input
    from cnnlab.training.checkpoint import load_checkpoint

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
    return Inputs(model, meta, as_model_input(x.clone()), y)


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def numeric_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics as flat dotted names, numbers only (what MLflow takes)."""
    return {name: float(value) for name, value in flatten(metrics, prefix).items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def track_stage(name: str, cfg: Mapping[str, Any], metrics: Mapping[str, Any],
                out_dir: Path) -> None:
    from cnnlab.core.tracking import log_stage

    log_stage(EXPERIMENT, name, params=cfg, metrics=numeric_metrics(metrics),
              artifacts=sorted(p for p in out_dir.iterdir() if p.is_file()), artifact_dir=name)


def settings_and_terms(cfg: Mapping[str, Any], where: str) -> tuple[AscentSettings, list]:
    return AscentSettings.from_cfg(cfg, where), build_terms(cfg, where)


# --- filters and neurons -----------------------------------------------------------------

def maximise_units(model: nn.Module, layer: str, input_shape: Sequence[int],
                   settings: AscentSettings, terms: Sequence, leak: float,
                   real_inputs: torch.Tensor) -> dict[str, Any]:
    """Every unit of `layer` (its output after ReLU) maximised in one batch, and compared
    with the best real input. The ascent follows a leaky ReLU so that units silent on the
    starting image still move; what is reported is the plain ReLU activation."""
    count = layer_output_shape(model, layer, input_shape)[0]
    units = range(count)
    start = time.perf_counter()
    result = ascend(model, layer, unit_objective(units, leaky(leak)), count, input_shape,
                    settings, terms, measure=unit_objective(units, relu))
    seconds = time.perf_counter() - start
    best_real, best_index = max_over_inputs(model, layer, real_inputs, relu)
    return {"images": result.images, "start": result.objective_start,
            "synthetic": result.objective_end, "best_real": best_real,
            "best_real_index": best_index, "seconds": seconds}


def summarise_units(kind: str, found: Mapping[str, Any]) -> dict[str, Any]:
    synthetic, real, start = found["synthetic"], found["best_real"], found["start"]
    alive = real > 0
    ratio = synthetic[alive] / real[alive]
    return {
        "kind": kind,
        "units": len(synthetic),
        "median_ratio": float(ratio.median()) if alive.any() else None,
        "beats_every_digit": float((synthetic > real).float().mean()),
        "silent_on_digits": int((~alive).sum()),
        "woken": int(((~alive) & (synthetic > 0)).sum()),
        "silent_after": int((synthetic <= 0).sum()),
        "raised": float((synthetic > start).float().mean()),
        "seconds": round(found["seconds"], 3),
    }


def unit_rows(layer: str, found: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per unit: activation at the start, reached, and by the best test digit."""
    rows = []
    for i in range(len(found["synthetic"])):
        synthetic, real = float(found["synthetic"][i]), float(found["best_real"][i])
        rows.append({"layer": layer, "unit": i, "start": float(found["start"][i]),
                     "synthetic": synthetic, "best_real": real,
                     "ratio": synthetic / real if real > 0 else None,
                     "best_real_index": int(found["best_real_index"][i])})
    return rows


def units_summary(name: str, metrics: Mapping[str, Any]) -> list[str]:
    """One line per layer of a `run_units` result, for the stage's console output."""
    return [f"{name} {layer}: {s['units']} {s['kind']}s, median ratio to best digit "
            f"{s['median_ratio']:.2f}, beats every digit {s['beats_every_digit']:.0%} "
            f"({s['seconds']:.1f}s)" for layer, s in metrics["layers"].items()]


def run_units(name: str, cfg: Mapping[str, Any], checkpoint: Path, data_dir: Path,
              out_dir: Path, track: bool = True) -> dict[str, Any]:
    """Stages `filters` and `neurons`: the image that most excites each unit of cfg.layers.

    Writes `out_dir/{<layer>.png per layer, images.pt, units.csv, <name>.md, claims.json,
    metrics.json}` atomically; logs them to MLflow (experiment `analysis`, run `name`).
    """
    layers = list(cfg.get("layers") or [])
    if not layers:
        raise ConfigError(f"analysis.{name}.layers: name at least one layer (e.g. conv1)")
    settings, terms = settings_and_terms(cfg, f"analysis.{name}")
    with torch_threads(cfg.get("threads"), f"analysis.{name}.threads"):
        inputs = load_inputs(checkpoint, data_dir, cfg.get("max_test"))
        shape = tuple(inputs.meta["input_shape"])
        found, summary, rows = {}, {}, []
        for layer in layers:
            kind = "filter" if len(layer_output_shape(inputs.model, layer, shape)) == 3 \
                else "neuron"
            found[layer] = maximise_units(inputs.model, layer, shape, settings, terms,
                                          float(cfg.get("leak", 0.01)), inputs.test_x)
            summary[layer] = summarise_units(kind, found[layer])
            rows += unit_rows(layer, found[layer])
    experiment = str(inputs.meta.get("experiment", checkpoint.parent.name))
    claims = [units_claim(name, experiment, layer, s) for layer, s in summary.items()]
    metrics = {"layers": summary, "test_digits": len(inputs.test_x)}
    table = [{"layer": layer, **s} for layer, s in summary.items()]
    ncols = int(cfg.get("grid_columns", 10))
    with atomic_dir(out_dir) as tmp:
        for layer in layers:
            save_png(tmp / f"{layer}.png", tile_grid(found[layer]["images"], ncols,
                                                     scale=int(cfg.get("scale", 3))))
        save_torch(tmp / "images.pt", {layer: found[layer]["images"] for layer in layers})
        write_text(tmp / "units.csv", csv_text(rows, ["layer", "unit", "start", "synthetic",
                                                      "best_real", "ratio", "best_real_index"]))
        write_text(tmp / f"{name}.md", units_markdown(name, experiment, table, ncols))
        write_claims(tmp / "claims.json", claims)
        write_json(tmp / "metrics.json", metrics)
    if track:
        track_stage(name, cfg, metrics, out_dir)
    return metrics


def units_claim(name: str, experiment: str, layer: str, s: Mapping[str, Any]) -> Claim:
    kind, median = s["kind"], s["median_ratio"]
    ratio = "no unit fires on any test digit" if median is None else (
        f"median activation ratio synthetic / best test digit {median:.2f}")
    return Claim(
        f"Gradient ascent on the input finds, for each {kind} of {layer}, an image that "
        f"excites it more than any real digit",
        f"{name} {experiment}:{layer}",
        f"{ratio}; beats every digit for {s['beats_every_digit']:.0%} of {s['units']} {kind}s "
        f"({s['silent_on_digits']} silent on all digits, {s['woken']} of them woken)",
        median, None if median is None else bool(median > 1.0))


def units_markdown(name: str, experiment: str, table: list[dict[str, Any]], ncols: int) -> str:
    return (f"# {name}: the input that maximises each unit of {experiment}\n\n"
            f"Each `<layer>.png` holds one tile per unit, in unit order, {ncols} per row, each "
            "tile stretched to its own range. Activation: sum of the unit's map after ReLU; "
            "ratio: activation of the synthetic image / highest activation of any test digit "
            "(units silent on every digit left out).\n\n"
            + markdown_table(table, ["layer", "kind", "units", "median_ratio",
                                     "beats_every_digit", "silent_on_digits", "woken",
                                     "silent_after", "raised", "seconds"]))


# --- classes -----------------------------------------------------------------------------

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
    targets = torch.arange(len(images))
    with torch.no_grad():
        logits = model(images)
    return {"logit": logits[targets, targets],
            "confidence": logits.softmax(dim=1)[targets, targets],
            "ink_fraction": ink_fraction(images, ink_threshold),
            "mean_intensity": images.reshape(len(images), -1).mean(dim=1),
            "corr_mean_digit": pearson(images, means)}


def run_classes(cfg: Mapping[str, Any], checkpoint: Path, data_dir: Path, out_dir: Path,
                track: bool = True) -> dict[str, Any]:
    """Stage `classes`: for each class, an image maximising its score (logit) without and
    with the few-ink (L1) penalty; confidence, ink and likeness to the class's mean digit.

    Writes `out_dir/{classes.png, images.pt, classes.csv, classes.md, claims.json,
    metrics.json}` atomically; logs them to MLflow (experiment `analysis`, run `classes`).
    """
    layer = str(cfg.get("layer", "out"))
    threshold = float(cfg.get("ink_threshold", 0.5))
    variants = {"unconstrained": cfg.get("unconstrained") or {},
                "few_ink": cfg.get("few_ink") or {}}
    with torch_threads(cfg.get("threads"), "analysis.classes.threads"):
        inputs = load_inputs(checkpoint, data_dir, cfg.get("max_test"))
        shape = tuple(inputs.meta["input_shape"])
        n_classes = len(inputs.meta["classes"])
        means = class_means(inputs.test_x, inputs.test_y, n_classes)
        real = measure_class_images(inputs.model, means, means, threshold)
        images, measured, seconds = {}, {}, {}
        for variant, vcfg in variants.items():
            settings, terms = settings_and_terms({**cfg.get("ascent", {}), **vcfg},
                                                 f"analysis.classes.{variant}")
            start = time.perf_counter()
            result = ascend(inputs.model, layer, unit_objective(range(n_classes)), n_classes,
                            shape, settings, terms)
            seconds[variant] = time.perf_counter() - start
            images[variant] = result.images
            measured[variant] = measure_class_images(inputs.model, result.images, means,
                                                     threshold)
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
    claims = class_claims(experiment, summary, float(cfg.get("fooled_confidence", 0.99)),
                          threshold)
    metrics = {**summary, "ink_threshold": threshold}
    with atomic_dir(out_dir) as tmp:
        panel = torch.cat([images["unconstrained"], images["few_ink"], means])
        save_png(tmp / "classes.png", tile_grid(panel, n_classes, normalise=False,
                                                scale=int(cfg.get("scale", 3))))
        save_torch(tmp / "images.pt", images)
        write_text(tmp / "classes.csv", csv_text(rows, list(rows[0])))
        write_text(tmp / "classes.md", classes_markdown(experiment, rows, summary, threshold))
        write_claims(tmp / "claims.json", claims)
        write_json(tmp / "metrics.json", metrics)
    if track:
        track_stage("classes", cfg, metrics, out_dir)
    return metrics


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
