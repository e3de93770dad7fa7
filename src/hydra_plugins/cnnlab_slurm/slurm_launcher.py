"""Hydra's submitit SLURM launcher, made to report and survive failed jobs.

What it changes in `hydra_plugins.hydra_submitit_launcher`: it waits for every job, so one
failed job never stops the others from being collected; a failed job is reported in one line
with its error (the last line of its error log, where a stage writes `error: ...`) and the
path of its SLURM log; job states come from `squeue` when the cluster keeps no accounting
(submitit asks `sacct`, which then fails, and a job that died without a result would be
waited for forever). Ctrl-C cancels the sweep's jobs. In a search the failures go back to the
sweeper as failed trials; otherwise the sweep exits with code 2 after the report.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf
from submitit.slurm.slurm import SlurmInfoWatcher

log = logging.getLogger(__name__)


class QueueWatcher(SlurmInfoWatcher):
    """Job states from `sacct`, or from `squeue --states=all` on a cluster without accounting
    (squeue knows finished jobs for MinJobAge seconds; a result file ends the wait before)."""

    def _make_command(self) -> list[str] | None:
        command = super()._make_command()
        if command is None or accounting():
            return command
        ids = ",".join(command[i + 1] for i, arg in enumerate(command) if arg == "-j")
        return ["squeue", "--noheader", "--states=all", "--array", "-j", ids, "-o", "%i|%T|%N"]

    def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
        text = string.decode() if isinstance(string, bytes) else string
        if not accounting():
            text = "JobID|State|NodeList\n" + text
        return super().read_info(text)


def accounting() -> bool:
    """Whether `sacct` answers on this cluster (asked once per process)."""
    if not hasattr(accounting, "answer"):
        done = subprocess.run(["sacct", "--noheader", "-j", "1"], capture_output=True, text=True)
        accounting.answer = "accounting storage is disabled" not in done.stdout + done.stderr
    return accounting.answer


WATCHER = QueueWatcher(delay_s=10)  # squeue is cheap: at most 10 s between checks


def one_line(job: Any, exc: Exception) -> str:
    """The job's own last word: its `error: ...` line, else the last line of its error log."""
    err = Path(job.paths.stderr)
    lines = [line.strip() for line in (err.read_text(errors="replace").splitlines()
                                       if err.is_file() else str(exc).splitlines())
             if line.strip() and not line.startswith("srun: ")]
    said = [line for line in lines if line.startswith("error: ")]
    return (said or lines or [type(exc).__name__])[-1].removeprefix("error: ")


class SlurmLauncher(BaseSubmititLauncher):
    _EXECUTOR = "slurm"

    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        import submitit

        assert self.config is not None
        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm", folder=params.pop("submitit_folder"),
            slurm_max_num_timeout=params.pop("max_num_timeout"))
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in base else f"slurm_{k}": v
                                      for k, v in params.items()})
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        numbered = list(enumerate(job_overrides, start=initial_job_idx))
        for idx, overrides in numbered:
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        jobs = executor.map_array(self, *zip(*[
            (list(o), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state())
            for idx, o in numbered], strict=True))
        for job in jobs:  # submitit makes array jobs of its own class: the watcher goes on each
            job.watcher = WATCHER
        try:
            returns = [self._outcome(job, idx, list(o))
                       for job, (idx, o) in zip(jobs, numbered, strict=True)]
        except KeyboardInterrupt:  # Ctrl-C: the jobs stop too (SIGTERM: their runs end KILLED)
            for job in jobs:
                job.cancel(check=False)
            raise
        failed = [r for r in returns if r.status == JobStatus.FAILED]
        if failed and not OmegaConf.select(self.config, "hydra.sweeper.objective"):
            print(f"error: {len(failed)} of {len(returns)} SLURM jobs failed (above)",
                  file=sys.stderr)
            sys.exit(2)
        return returns

    @staticmethod
    def _outcome(job: Any, idx: int, overrides: list[str]) -> JobReturn:
        """The job's return; a failure is printed in one line, and returned as a failure."""
        try:
            ret = job.results()[0]
            if ret.status != JobStatus.FAILED:
                return ret
            exc = ret._return_value  # noqa: SLF001 - Hydra keeps a job's exception there
            why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        except submitit_errors() as exc:  # the job died without a result (exit, signal, limit)
            ret = JobReturn(overrides=overrides, status=JobStatus.FAILED)
            ret.return_value = exc
            why = one_line(job, exc)
        print(f"error: job #{idx} ({' '.join(overrides)}), SLURM job {job.job_id}: {why}; "
              f"its SLURM log: {job.paths.stderr}", file=sys.stderr)
        return ret


def submitit_errors() -> tuple[type[Exception], ...]:
    from submitit.core.utils import FailedJobError, UncompletedJobError

    return FailedJobError, UncompletedJobError
