"""Cross-gender: train on male voices, test on female ones, and the reverse.

The lecture's reason for filters that move along frequency: a man and a woman saying the
same word differ mainly by a shift in frequency. Here each compared model is trained on the
clips of one group of voices and tested on the other group, with the same seeds for every
model (paired). The groups are config (`analysis.cross_gender.male` / `female`): eSpeak's
f1-f5 and m1-m8 carry a gender in their names; other variants are listed as their eSpeak
voice files declare them. On another source (FSDD), list its speakers; a group with no clip
in the data makes the test "not measured", not an error.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError, DataError
from cnnlab.data.prepared import SPLITS, PreparedData, Split, load_prepared, write_prepared

DIRECTIONS = {"male_to_female": ("male", "female"), "female_to_male": ("female", "male")}


@dataclass
class CrossGenderConfig:
    """analysis.cross_gender (values in conf/analysis/cross_gender.yaml)."""

    dataset: str  # the prepared audio dataset whose clips are regrouped
    experiments: list[str]  # entries of `train`, each trained in both directions
    seeds: list[int]  # every seed, for every experiment (paired)
    male: list[str]  # speakers (eSpeak variants, or a folder source's speakers)
    female: list[str]
    val_fraction: float  # of the training group's clips, for Lightning's validation


def unseen_speakers(manifest: Mapping[str, Any]) -> bool:
    """Whether the prepared test set holds only speakers never heard in training."""
    speakers = manifest.get("split", {}).get("speakers", {})
    return bool(speakers.get("test")) and not set(speakers["test"]) & set(
        speakers.get("train", []))


def clip_speakers(data_dir: Path) -> dict[str, list[str]]:
    """The speaker of every row of each split, from the prepared `clips.csv`."""
    path = data_dir / "clips.csv"
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        speakers: dict[str, list[str]] = {name: [] for name in SPLITS}
        for row in rows:
            speakers[row["split"]].append(row["speaker"])
    except (OSError, KeyError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the clips' speakers ({exc!r}; re-run "
                        "prepare_audio)") from exc
    return speakers


def groups(data: PreparedData, speakers: Mapping[str, list[str]], cfg: Mapping[str, Any]
           ) -> dict[str, Split]:
    """Every clip of the prepared splits whose speaker is in the male or the female list."""
    overlap = sorted(set(cfg["male"]) & set(cfg["female"]))
    if overlap:
        raise ConfigError(f"analysis.cross_gender: {overlap} listed as both male and female")
    x = torch.cat([getattr(data, s).x for s in SPLITS])
    y = torch.cat([getattr(data, s).y for s in SPLITS])
    who = [name for s in SPLITS for name in speakers[s]]
    if len(who) != len(y):
        raise DataError(f"clips.csv lists {len(who)} clips but the splits hold {len(y)}")
    out = {}
    for group in ("male", "female"):
        rows = torch.tensor([i for i, name in enumerate(who) if name in set(cfg[group])],
                            dtype=torch.int64)
        out[group] = Split(x[rows], y[rows])
    return out


def direction_splits(train: Split, test: Split, val_fraction: float, seed: int
                     ) -> dict[str, Split]:
    """Train (less a seeded val part) from one group, test the other."""
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"analysis.cross_gender.val_fraction={val_fraction}: must be in (0, 1)")
    order = torch.from_numpy(np.random.default_rng([seed, 5]).permutation(len(train)))
    n_val = max(1, int(round(val_fraction * len(train))))
    val_rows, train_rows = order[:n_val], order[n_val:]
    return {"train": Split(train.x[train_rows], train.y[train_rows]),
            "val": Split(train.x[val_rows], train.y[val_rows]), "test": test}


def write_direction(train: Split, test: Split, val_fraction: float, seed: int,
                    manifest: Mapping[str, Any], out_dir: Path) -> None:
    """`direction_splits` as a prepared dataset in `out_dir`."""
    write_prepared(out_dir, direction_splits(train, test, val_fraction, seed), dict(manifest))


def cross_gender(cfg: Mapping[str, Any], train: Mapping[str, Any], data_dir: Path
                 ) -> dict[str, Any]:
    """Train every experiment on each group and test on the other; per direction and
    experiment the seeds and test accuracies, or why nothing was measured."""
    from cnnlab.training.replicates import train_seeds  # Lightning: not for readers of DIRECTIONS

    data = load_prepared(data_dir)
    split = groups(data, clip_speakers(data_dir), cfg)
    sizes = {group: len(s) for group, s in split.items()}
    if not all(sizes.values()):
        return {"measured": False, "clips": sizes,
                "reason": f"no clip of a {'male' if not sizes['male'] else 'female'} speaker "
                          f"listed in analysis.cross_gender among the clips of {data_dir}"}
    results: dict[str, Any] = {"measured": True, "clips": sizes}
    manifest = {k: data.manifest[k] for k in ("classes", "input_shape")}
    with tempfile.TemporaryDirectory(prefix="cnnlab-cross-gender-") as tmp:
        for direction, (source, target) in DIRECTIONS.items():
            folder = Path(tmp) / direction
            (folder / "data").mkdir(parents=True)
            write_direction(split[source], split[target], float(cfg["val_fraction"]),
                            int(cfg["seeds"][0]), {**manifest, "dataset": direction},
                            folder / "data")
            results[direction] = train_seeds(train, cfg["experiments"], cfg["seeds"],
                                             folder / "data", folder / "models",
                                             f" {direction}")
    return results
