"""Preemption and time limits under SLURM: the job saves its state, requeues, and resumes.

SLURM warns a job before it stops it with SIGUSR1 (`#SBATCH --signal=USR1@<seconds>` before
the time limit, or `scancel --signal=USR1` / a preemption). The training then stops at the end
of the epoch in progress, right after that epoch's resume state is saved (the safe point:
cnnlab.training.resume), and rank 0 requeues the job as its process exits. The requeued job
runs the same command, which finds that state and continues the same MLflow run, to weights
equal to an uninterrupted training's. Lightning's own requeue is off: it checkpoints
mid-epoch, where the batch order and random state cannot be resumed identically.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
from typing import Any

import lightning as L

REQUEUE_SIGNAL = signal.SIGUSR1


def under_slurm_batch() -> bool:
    """A step of a batch job, which SLURM can requeue (not an interactive `srun`)."""
    return bool(os.environ.get("SLURM_JOB_ID")) and os.environ.get("SLURM_JOB_NAME") not in (
        None, "bash", "interactive")


class RequeueOnSignal(L.Callback):
    """Stops the fit at the next epoch end after SIGUSR1; `requeue()` then asks SLURM to
    requeue the job once this process has exited (and ended its run)."""

    def __init__(self) -> None:
        self.signalled = False
        self._previous: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(REQUEUE_SIGNAL, self._note)

    def _note(self, signum: int, frame: object) -> None:
        self.signalled = True
        print(f"signal {signum}: stopping after this epoch, then requeueing job "
              f"{os.environ.get('SLURM_JOB_ID')}", flush=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.signalled:  # SaveEveryEpoch, before this callback, has saved this epoch
            trainer.should_stop = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self._previous is not None:
            signal.signal(REQUEUE_SIGNAL, self._previous)
            self._previous = None

    def requeue(self) -> None:
        """`scontrol requeue` this job when the process exits (rank 0 only)."""
        job = os.environ.get("SLURM_JOB_ID", "")
        if os.environ.get("SLURM_PROCID", "0") == "0":
            atexit.register(subprocess.run, ["scontrol", "requeue", job], check=False)
