"""The experiments of one domain side by side: the results table of the speech and text stages.

A domain's experiments are the entries of `train` on its dataset, found in the params, so a
new experiment file in `conf/experiment/` joins the table with no change here.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnlab.core.claims import read_metrics
from cnnlab.core.errors import ConfigError, DataError

COLUMNS = ["experiment", "model", "test acc %", "params", "trainable", "s/epoch", "fit s",
           "epochs"]


def domain_metrics(train: Mapping[str, Mapping[str, Any]], dataset: str, metrics_dir: Path
                   ) -> dict[str, dict[str, Any]]:
    """Metrics of every entry of `train` on `dataset` (config order), with its description."""
    names = [name for name, exp in train.items() if exp.get("dataset") == dataset]
    if not names:
        raise ConfigError(f"train: no experiment has dataset={dataset!r}")
    return {name: {**read_metrics(metrics_dir / f"{name}.json"),
                   "description": train[name].get("description", "")} for name in names}


def results_rows(metrics: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One table row per experiment."""
    return [{"experiment": name,
             "model": m["description"],
             "test acc %": round(100 * float(m["test_acc"]), 2),
             "params": int(m["params"]),
             "trainable": int(m.get("trainable_params", m["params"])),
             "s/epoch": m.get("seconds_per_epoch"),
             "fit s": m.get("fit_seconds"),
             "epochs": m.get("epochs")} for name, m in metrics.items()]


def se_of_difference(a: float, b: float, n: int) -> float:
    """Standard error of the difference of two accuracies on n test items (as independent)."""
    return math.sqrt((a * (1 - a) + b * (1 - b)) / n) if n else float("nan")


def compare(a: Mapping[str, Any], b: Mapping[str, Any], n: int, names: tuple[str, str],
            test_set: str) -> tuple[float, str]:
    """Accuracy of `a` minus `b`, and the evidence in words (standard errors, parameters)."""
    diff = float(a["test_acc"]) - float(b["test_acc"])
    se = se_of_difference(float(a["test_acc"]), float(b["test_acc"]), n)
    ratio = a["params"] / b["params"]
    return diff, (f"{names[0]} {a['test_acc']:.2%} vs {names[1]} {b['test_acc']:.2%} on {n} "
                  f"{test_set} (difference {diff:+.2%}, about {diff / se:+.1f} standard errors); "
                  f"params {a['params']:,} vs {b['params']:,} (ratio {ratio:.2f})")


def comparable(a: Mapping[str, Any], b: Mapping[str, Any], tolerance: float) -> bool:
    """Parameter counts within `tolerance` of each other."""
    return abs(a["params"] / b["params"] - 1) <= tolerance


def read_manifest(path: Path, stage: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the prepared data's manifest (run {stage} "
                        f"first; {exc})") from exc


def training_curves(train: Mapping[str, Mapping[str, Any]], dataset: str, plots_dir: Path) -> str:
    """Every experiment's per-epoch history on `dataset` in one long CSV (epoch, experiment,
    val_acc, val_loss): one chart per domain in `dvc plots` (template by_experiment)."""
    lines = ["epoch,experiment,val_acc,val_loss"]
    for name, exp in train.items():
        path = plots_dir / f"{name}.csv"
        if exp.get("dataset") != dataset or not path.is_file():
            continue
        with path.open(newline="") as f:
            lines += [f"{row['epoch']},{name},{row['val_acc']},{row['val_loss']}"
                      for row in csv.DictReader(f)]
    return "\n".join(lines) + "\n"
