"""More seeds of the same experiments, in one process: the evidence behind a paired verdict.

Each experiment of `train` keeps its own seed in its train@<name> stage (its checkpoint,
metrics and MLflow model). A replicate run trains the same config again with each further
seed, on the same data, so that compared models share their seeds (paired differences), and
pays Python and torch start-up once for all of them instead of once per seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.core.errors import ConfigError
from cnnlab.core.paths import seed_checkpoint
from cnnlab.core.stage import validate
from cnnlab.training.run import ExperimentConfig, RunOutputs, train_experiment


@dataclass
class SeedsConfig:
    """seeds.<domain> (values in conf/seeds/*.yaml)."""

    dataset: str  # the prepared dataset the experiments train on
    experiments: list[str]  # entries of `train`
    seeds: list[int]  # further seeds, on top of each experiment's own `seed`


def experiment_config(train: Mapping[str, Any], name: str, seed: int) -> dict[str, Any]:
    """`train.<name>` checked against its schema, with `seed` and no model registration."""
    if name not in train:
        raise ConfigError(f"{name}: no such entry of train (entries: {sorted(train)})")
    cfg = validate(train[name], ExperimentConfig, f"train.{name}")
    return {**cfg, "seed": int(seed), "register_model": False}


def train_seeds(train: Mapping[str, Any], names: Sequence[str], seeds: Sequence[int],
                data_dir: Path, out_dir: Path, tag: str = "") -> dict[str, dict[str, Any]]:
    """Train every experiment of `names` once per seed on `data_dir`; checkpoints and
    histories go under `out_dir`. Returns, per experiment, the seeds and their metrics."""
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        runs = []
        for seed in seeds:
            cfg = experiment_config(train, name, seed)
            checkpoint = seed_checkpoint(out_dir, name, seed)
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            metrics = train_experiment(f"{name}{tag} seed {seed}", cfg, data_dir,
                                       RunOutputs(checkpoint, checkpoint.with_suffix(".csv")),
                                       evidence=False)
            runs.append(metrics)
        results[name] = {"seeds": [int(s) for s in seeds],
                         "test_acc": [float(m["test_acc"]) for m in runs],
                         "test_samples": runs[0]["test_samples"] if runs else 0,
                         "params": runs[0]["params"] if runs else None,
                         "fit_seconds": sum(float(m["fit_seconds"]) for m in runs)}
    return results
