"""Resumable training: the full state of the last complete epoch, kept outside DVC's outputs.

DVC deletes a stage's outputs before it runs the stage, so the state lives under the project
root (`.cnnlab/resume/`, `cnnlab.core.paths.state_dir`, so `dvc exp run` copies find it
too). It is keyed by the experiment's resolved config and the prepared data's manifest: a
changed config or changed data never resumes stale state. It is Lightning's own checkpoint
(model, optimiser, scheduler, loop counters, callbacks' states) plus what makes the next
epochs identical: the batch order's pass counter and torch's random state (dropout).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cnnlab.core.io import sha256_file, write_json
from cnnlab.core.paths import state_dir


@dataclass(frozen=True)
class ResumeState:
    folder: Path

    @property
    def checkpoint(self) -> Path:
        return self.folder / "last.ckpt"

    @property
    def meta(self) -> dict[str, Any]:
        path = self.folder / "meta.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def exists(self) -> bool:
        return self.checkpoint.is_file() and bool(self.meta)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def resume_state(name: str, cfg: Mapping[str, Any], data_dir: Path) -> ResumeState:
    """Where experiment `name` with this config on this data keeps its resume state."""
    manifest = data_dir / "manifest.json"
    key = {"experiment": name, "config": cfg,
           "data": sha256_file(manifest) if manifest.is_file() else None}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return ResumeState(state_dir() / "resume" / f"{name}-{digest[:16]}")


class SaveEveryEpoch(L.Callback):
    """Writes the resume state at the end of every training epoch, atomically."""

    def __init__(self, state: ResumeState, run_id: str | None) -> None:
        self.state, self.run_id = state, run_id

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        tmp = self.state.checkpoint.with_name(".last.ckpt.tmp")
        if trainer.is_global_zero:
            self.state.folder.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(tmp)  # every rank joins; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.state.checkpoint)
            write_json(self.state.folder / "meta.json",
                       {"epochs_done": trainer.current_epoch + 1, "run_id": self.run_id})


class RandomState(L.Callback):
    """Carries torch's random state and the batch order's pass counter through a resume."""

    def __init__(self, train_batches: Any) -> None:
        self.train_batches = train_batches

    def state_dict(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state(), "passes": self.train_batches.passes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        self.train_batches.passes = int(state["passes"])
