"""Stages filters and neurons: the input that most excites each unit of a trained network.

For every unit of the chosen layers, batched gradient ascent on the input finds the image
that maximises its activation (a filter: the sum of its feature map after ReLU), and the
activation reached is compared with the highest one any real test digit gives the unit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from cnnlab.analysis.grids import save_png, tile_grid
from cnnlab.analysis.trained import load_inputs
from cnnlab.core.claims import Claim, csv_text, markdown_table
from cnnlab.core.devices import resolve_device
from cnnlab.core.errors import ConfigError
from cnnlab.core.io import save_torch, write_text
from cnnlab.core.threads import torch_threads


@dataclass
class UnitsConfig:
    """analysis.filters and analysis.neurons (values in conf/analysis/filters.yaml)."""

    experiment: str
    dataset: str
    max_test: int | None
    layers: list[str]
    steps: int
    lr: float
    parametrisation: str
    init_mean: float
    init_std: float
    seed: int
    leak: float
    l1: float
    tv: float
    jitter: int
    blur_sigma: float
    blur_every: int
    grid_columns: int
    scale: int
    threads: int | None
    device: str


def maximise_units(model: nn.Module, layer: str, input_shape: Sequence[int],
                   settings: AscentSettings, terms: Sequence, leak: float,
                   real_inputs: torch.Tensor) -> dict[str, Any]:
    """Every unit of `layer` (its output after ReLU) maximised in one batch, and compared
    with the best real input. The ascent follows a leaky ReLU so that units silent on the
    starting image still move; what is reported is the plain ReLU activation. Computed on
    the model's device, returned on the CPU."""
    count = layer_output_shape(model, layer, input_shape)[0]
    units = range(count)
    start = time.perf_counter()
    result = ascend(model, layer, unit_objective(units, leaky(leak)), count, input_shape,
                    settings, terms, measure=unit_objective(units, relu))
    seconds = time.perf_counter() - start
    best_real, best_index = max_over_inputs(model, layer, real_inputs, relu)
    return {"images": result.images.cpu(), "start": result.objective_start.cpu(),
            "synthetic": result.objective_end.cpu(), "best_real": best_real.cpu(),
            "best_real_index": best_index.cpu(), "seconds": seconds}


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
              out_dir: Path) -> tuple[dict[str, Any], list[Claim]]:
    """The image that most excites each unit of cfg.layers (stages `filters` and `neurons`).

    Writes `out_dir/{<layer>.png per layer, images.pt, units.csv, <name>.md}`; returns the
    metrics and the claims.
    """
    layers = list(cfg["layers"])
    if not layers:
        raise ConfigError(f"analysis.{name}.layers: name at least one layer (e.g. conv1)")
    settings = AscentSettings.from_cfg(cfg, f"analysis.{name}")
    terms = build_terms(cfg, f"analysis.{name}")
    device = resolve_device(cfg["device"], f"analysis.{name}.device")
    with torch_threads(cfg["threads"], f"analysis.{name}.threads"):
        inputs = load_inputs(checkpoint, data_dir, cfg["max_test"], device)
        shape = tuple(inputs.meta["input_shape"])
        found, summary, rows = {}, {}, []
        for layer in layers:
            kind = "filter" if len(layer_output_shape(inputs.model, layer, shape)) == 3 \
                else "neuron"
            found[layer] = maximise_units(inputs.model, layer, shape, settings, terms,
                                          float(cfg["leak"]), inputs.test_x)
            summary[layer] = summarise_units(kind, found[layer])
            rows += unit_rows(layer, found[layer])
    experiment = str(inputs.meta.get("experiment", checkpoint.parent.name))
    claims = [units_claim(name, experiment, layer, s) for layer, s in summary.items()]
    table = [{"layer": layer, **s} for layer, s in summary.items()]
    ncols = int(cfg["grid_columns"])
    for layer in layers:
        save_png(out_dir / f"{layer}.png", tile_grid(found[layer]["images"], ncols,
                                                     scale=int(cfg["scale"])))
    save_torch(out_dir / "images.pt", {layer: found[layer]["images"] for layer in layers})
    write_text(out_dir / "units.csv", csv_text(rows, ["layer", "unit", "start", "synthetic",
                                                      "best_real", "ratio", "best_real_index"]))
    write_text(out_dir / f"{name}.md", units_markdown(name, experiment, table, ncols))
    return {"layers": summary, "test_digits": len(inputs.test_x)}, claims


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
