"""Where things are: the project root, cnnlab's state folder, the tracking store's address,
the stage folders and the checkpoints in them.

Plain path arithmetic, kept apart from the modules that act on those places (tracking, resume,
the services) so that finding a folder never imports MLflow or Lightning.

The root is found from outside any DVC temporary copy: DVC runs queued or `--temp`
experiments in copies under `<root>/.dvc/tmp/exps/`, and those resolve to the original root,
so every run lands in the one tracking store and the one state folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT = "model.ckpt"  # an experiment's checkpoint, in its folder under `paths.models`


def project_root(start: str | Path | None = None) -> Path:
    """The nearest directory holding `.dvc` or `.git`, seen from outside any DVC temp copy."""
    path = Path(start or Path.cwd()).resolve()
    parts = path.parts
    for marker in (".dvc", ".git"):
        if marker in parts:  # inside <root>/.dvc/tmp/exps/<copy> or similar
            idx = parts.index(marker)
            return Path(*parts[:idx])
    for candidate in (path, *path.parents):
        if (candidate / ".dvc").is_dir() or (candidate / ".git").exists():
            return candidate
    return path


def tracking_uri(start: str | Path | None = None) -> str:
    """The MLflow store: `MLFLOW_TRACKING_URI`, else `sqlite:///<project root>/mlflow.db`
    (an absolute path, so that DVC's temporary copies log to the one database)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{project_root(start) / 'mlflow.db'}"


def state_dir() -> Path:
    """Where cnnlab keeps what is neither an output nor a run: resume state, the outbox.

    `<project root>/.cnnlab` (git-ignored), or `CNNLAB_STATE_DIR`.
    """
    return Path(os.environ.get("CNNLAB_STATE_DIR") or project_root() / ".cnnlab")


def outbox_dir() -> Path:
    """What tracking could not send while its store was down, until it is replayed."""
    return state_dir() / "outbox"


def checkpoint(models: Path, experiment: str) -> Path:
    """The checkpoint of train@<experiment>: <models>/<experiment>/model.ckpt."""
    return models / experiment / CHECKPOINT


def seed_checkpoint(folder: Path, experiment: str, seed: int) -> Path:
    """A replicate's checkpoint (seeds stages): <folder>/<experiment>/seed<seed>.ckpt."""
    return folder / experiment / f"seed{seed}.ckpt"


@dataclass(frozen=True)
class Paths:
    """Where stages read and write (`paths` of the config)."""

    prepared: Path
    models: Path
    metrics: Path
    plots: Path
    reports: Path
