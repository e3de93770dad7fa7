"""A study's best trial as a new experiment file, so that `dvc repro` trains the winner.

The file names its base experiment in its defaults and holds only what the search changed
(the search's fixed settings, such as its 1-epoch budget, are not part of the winner). A list
in the config (e.g. `model.conv`) is written whole, as a list replaces, never merges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cnnlab.core.errors import ConfigError
from cnnlab.core.io import write_text


@dataclass(frozen=True)
class Winner:
    path: Path  # the experiment file written
    defaults_line: str  # what conf/config.yaml needs for `dvc repro` to train it
    added: bool  # whether that line was added


def changed_tree(experiment: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The parts of `experiment` under `keys` (dotted, relative), each cut at its first list."""
    tree: dict[str, Any] = {}
    for key in keys:
        path = []
        for part in key.split("."):
            if part.isdigit():
                break
            path.append(part)
        value = OmegaConf.select(OmegaConf.create(experiment), ".".join(path))
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return tree


def write_winner(study: Any, conf: Path, name: str | None = None, add_default: bool = False,
                 force: bool = False) -> Winner:
    """Write the best trial of `study` (an optuna.Study made by a search) into
    `conf/experiment/<name>.yaml` (default name: `<study>_best`)."""
    run = study.user_attrs.get("cnnlab.run")
    base = conf / "experiment" / f"{run}.yaml"
    if not run or not base.is_file():
        raise ConfigError(f"study {study.study_name!r}: its experiment {run!r} has no file {base}")
    if not any(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)):
        raise ConfigError(f"study {study.study_name!r}: no completed trial yet")
    best, prefix = study.best_trial, f"train.{run}."
    outside = sorted(k for k in best.params if not k.startswith(prefix))
    if outside:
        raise ConfigError(f"study {study.study_name!r}: {outside} lie outside train.{run}, "
                          "which an experiment file cannot hold")
    name = name or f"{study.study_name}_best"
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ConfigError(f"--name {name!r}: use letters, digits and _ (a DVC stage name)")
    path = conf / "experiment" / f"{name}.yaml"
    if path.exists() and not force:
        raise ConfigError(f"{path}: exists already (pass --force to replace it)")
    with initialize_config_dir(str(conf.resolve()), version_base="1.3"):
        cfg = compose("config", overrides=[f"{k}={v}" for k, v in best.params.items()])
    experiment = OmegaConf.to_container(cfg.train[run], resolve=True)
    objective = study.user_attrs.get("cnnlab.objective", "value")
    finished = sum(t.state.name != "RUNNING" for t in study.get_trials(deepcopy=False))
    line = f"  - experiment@train.{name}: {name}"
    body = {"description": f"{run} with the winner of search {study.study_name} (trial "
                           f"{best.number} of {finished}, {objective} {best.value:.4g} in the search)",
            **changed_tree(experiment, [k.removeprefix(prefix) for k in best.params])}
    write_text(path, "\n".join([
        f"# Written by `python -m cnnlab search-best {study.study_name}`: {run} with the best of",
        f"# {finished} trials (trial {best.number}, {objective} {best.value:.6g}). Lands at "
        f"train.{name} once conf/config.yaml has", f"#{line[1:]}", "# in its defaults.",
        "defaults:", f"  - {run}", "  - _self_", yaml.safe_dump(body, sort_keys=False, width=100)]))
    return Winner(path, line.strip(), add_default and add_to_defaults(conf / "config.yaml",
                                                                      line, run))


def add_to_defaults(config: Path, line: str, run: str) -> bool:
    """Insert `line` after the defaults line of experiment `run`; False if it is there already."""
    lines = config.read_text(encoding="utf-8").splitlines(keepends=True)
    if any(existing.strip() == line.strip() for existing in lines):
        return False
    anchor = f"- experiment@train.{run}: {run}"
    at = next((i for i, existing in enumerate(lines) if existing.strip() == anchor), None)
    if at is None:
        raise ConfigError(f"{config}: no defaults line `{anchor}` to add the winner after")
    lines.insert(at + 1, line + "\n")
    write_text(config, "".join(lines))
    return True
