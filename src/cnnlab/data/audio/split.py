"""Train/val/test splits of clips: by held-out speakers or by take numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnlab.core.errors import ConfigError
from cnnlab.data.audio.checks import choice
from cnnlab.data.audio.wav import Clip

SPLIT_BY = ("speaker", "take")


def _pick(wanted: Any, pool: list[str], rng: np.random.Generator, key: str) -> list[str]:
    """A list of names (each must be in `pool`) or a count drawn from `pool` by the seed."""
    if wanted is None:
        return []
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        if not 0 <= wanted < len(pool):
            raise ConfigError(f"data.audio.split.{key}={wanted}: must be between 0 and "
                              f"{len(pool) - 1} (there are {len(pool)} speakers left)")
        return sorted(pool[i] for i in rng.permutation(len(pool))[:wanted])
    names = [str(n) for n in wanted]
    missing = sorted(set(names) - set(pool))
    if missing:
        raise ConfigError(f"data.audio.split.{key}: {missing} not among the speakers "
                          f"available here {pool}")
    return sorted(set(names))


def split_indices(clips: Sequence[Clip], cfg: Mapping[str, Any], seed: int
                  ) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Clip indices of train/val/test, by held-out speakers or by take numbers.

    By speaker, no test (or val) speaker has a clip in training. Without val speakers or
    takes, `val_fraction` of the remaining clips is drawn by the seed.
    """
    by = choice(cfg, "by", SPLIT_BY, "data.audio.split")
    rng = np.random.default_rng([seed, 2])
    if by == "speaker":
        speakers = sorted({c.speaker for c in clips})
        test = _pick(cfg["test_speakers"], speakers, rng, "test_speakers")
        rest = [s for s in speakers if s not in test]
        val = _pick(cfg["val_speakers"], rest, rng, "val_speakers")
        role = {s: "test" for s in test} | {s: "val" for s in val}
        assign = [role.get(c.speaker, "train") for c in clips]
        info: dict[str, Any] = {"by": "speaker"}
    else:
        test_takes = {str(t) for t in cfg["test_takes"]}
        val_takes = {str(t) for t in cfg["val_takes"]} - test_takes
        assign = ["test" if c.take in test_takes else "val" if c.take in val_takes else "train"
                  for c in clips]
        info = {"by": "take", "test_takes": sorted(test_takes, key=_natural),
                "val_takes": sorted(val_takes, key=_natural)}
    if "val" not in assign:
        fraction = float(cfg["val_fraction"])
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"data.audio.split.val_fraction={fraction}: must be in (0, 1) "
                              "when no val speakers or takes are given")
        train = [i for i, a in enumerate(assign) if a == "train"]
        for i in rng.permutation(train)[: int(round(fraction * len(train)))]:
            assign[int(i)] = "val"
        info["val_fraction"] = fraction
    parts = {name: [i for i, a in enumerate(assign) if a == name] for name in ("train", "val",
                                                                             "test")}
    for name, idx in parts.items():
        if not idx:
            raise ConfigError(f"data.audio.split: the {name} split is empty ({info}); "
                              "check test/val speakers or takes")
    info["speakers"] = {name: sorted({clips[i].speaker for i in idx}, key=_natural)
                        for name, idx in parts.items()}
    return parts, info


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)
