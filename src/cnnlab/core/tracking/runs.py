"""Runs: one MLflow run around a stage, and the calls that log to it.

- rank zero: in a multi-process (DDP) run only rank 0 logs, so a training is one run;
- a Hydra multirun's runs share a parent run, created once under the store's lock;
- orphans: a run carries its host and process id; a stage that starts marks the RUNNING runs
  of its own stage whose process has died as KILLED;
- every `log_*` call goes through the outbox (`outbox.send`), so an outage never costs the
  stage;
- a run carries the environment it was made in (`cnnlab.env.*` tags, cnnlab.core.environment)
  and, every `system_metrics_interval` seconds, MLflow's system metrics (`system/*`: CPU,
  memory, disk, network; GPU when nvidia-ml-py finds one).

System metrics: cnnlab starts MLflow's sampler itself, not through `start_run`'s
`log_system_metrics`, so that the interval is the run's (no process-wide environment variable)
and so that it is stopped here. Its samples never go through the outbox: with the store down
they are dropped. The sampler stops by itself when the store does not answer; a stage that
ends with the store down stops it without sending (it would wait on the dead store).
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from cnnlab.core import environment
from cnnlab.core.devices import is_rank_zero
from cnnlab.core.errors import StageInterrupted
from cnnlab.core.slurm import JOB_TAG, job_alive, slurm_tags
from cnnlab.core.tracking import outbox
from cnnlab.core.tracking.store import artifact_location, configure, retrying, store_lock

if TYPE_CHECKING:
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

SWEEP_TAG = "cnnlab.sweep"
PARENT_TAG = "mlflow.parentRunId"
ARTIFACT_LIMIT = 50 * 2**20  # bigger outputs (prepared datasets) are DVC's to store, not MLflow's


def flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config to dotted keys, as MLflow params (lists are kept as their string)."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def numeric(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics as flat dotted names, numbers only (what MLflow takes)."""
    return {name: float(value) for name, value in flatten(metrics, prefix).items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def rank_zero(fn: Callable[..., None]) -> Callable[..., None]:
    """A logging call that only rank 0 of a multi-process run makes."""

    @functools.wraps(fn)
    def logged(*args: Any, **kwargs: Any) -> None:
        if is_rank_zero():
            fn(*args, **kwargs)

    return logged


# --- the run around a stage -----------------------------------------------------------------

def _experiment_id(uri: str, experiment: str) -> str:
    """The experiment's id, made on its first run. Two jobs that start at once (a sweep, two
    SLURM jobs) may both find it missing; the one whose create loses takes the winner's."""
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        try:
            return mlflow.create_experiment(experiment,
                                            artifact_location=artifact_location(uri, experiment))
        except MlflowException as exc:
            found = mlflow.get_experiment_by_name(experiment)
            if exc.error_code != "RESOURCE_ALREADY_EXISTS" or found is None:
                raise
    return found.experiment_id


def _sweep_parent(experiment_id: str, sweep_id: str) -> str:
    """The run that groups a Hydra multirun in the dashboard; created by the first job.

    Jobs that start at once on different hosts (a SLURM array: no lock they share) may each
    find none and create one. Each creator then looks again, and every job keeps the earliest
    parent; a creator whose parent is not that one deletes it.
    """
    client = MlflowClient()
    found = client.search_runs([experiment_id], _parent_query(sweep_id))
    if found:
        return _earliest(found).info.run_id
    run = client.create_run(experiment_id, run_name=f"sweep {sweep_id}",
                            tags={SWEEP_TAG: sweep_id, "cnnlab.role": "sweep"})
    client.set_terminated(run.info.run_id)
    kept = _earliest([run, *client.search_runs([experiment_id], _parent_query(sweep_id))])
    if kept.info.run_id != run.info.run_id:
        client.delete_run(run.info.run_id)
    return kept.info.run_id


def _parent_query(sweep_id: str) -> str:
    return f"tags.`{SWEEP_TAG}` = '{sweep_id}' and tags.`cnnlab.role` = 'sweep'"


def _earliest(found: list[Any]) -> Any:
    """The parent every job of a sweep agrees on: the first made (then the lowest id)."""
    return min(found, key=lambda r: (r.info.start_time, r.info.run_id))


def log_sweep_outcome(sweep_id: str, metrics: Mapping[str, float], params: Mapping[str, Any],
                      tags: Mapping[str, Any], step: int = 0) -> str | None:
    """Log a sweep's outcome (a search's best trial) on the parent run of its jobs, found by
    the sweep id in any experiment, at `step` (trials done); returns the run's id, or None if
    no job ever started a run.

    MLflow params cannot change: a param already logged with another value (a study extended
    after it ended) keeps its first value; the `tags` carry the current outcome.
    """
    configure()
    client = MlflowClient()
    experiments = [e.experiment_id for e in retrying(client.search_experiments)]
    found = retrying(client.search_runs, experiments, _parent_query(sweep_id))
    if not found:
        return None
    parent = _earliest(found)  # the one its jobs keep
    run_id, logged = parent.info.run_id, parent.data.params
    stamp = int(time.time() * 1000)
    for entry in ({"kind": "metrics", "metrics": dict(metrics), "step": step, "timestamp": stamp},
                  {"kind": "params", "params": {k: str(v) for k, v in params.items()
                                                if k not in logged}},
                  {"kind": "tags", "tags": {k: str(v) for k, v in tags.items()}}):
        retrying(outbox.apply, client, {"run_id": run_id, **entry})
    return run_id


@contextlib.contextmanager
def stage_run(experiment: str, run_name: str, tags: Mapping[str, str] | None = None,
              sweep_id: str | None = None, continue_run: str | None = None,
              system_metrics_interval: float = 0) -> Iterator[mlflow.ActiveRun | None]:
    """One run in MLflow experiment `experiment` around a stage; a sweep's runs share a parent.

    `continue_run`: the id of an interrupted run of the same stage to carry on (resume).
    `system_metrics_interval`: seconds between system metrics samples (0: none).
    The run ends FINISHED, FAILED, or KILLED when a signal stopped the stage. Yields None,
    and logs nothing, on a non-zero rank of a multi-process run.
    """
    if not is_rank_zero():
        yield None
        return
    uri = configure()
    tags = {**(tags or {}), "cnnlab.host": socket.gethostname(), "cnnlab.pid": str(os.getpid()),
            **environment.as_tags(environment.gather()), **slurm_tags()}
    if os.environ.get("DVC_EXP_NAME"):  # set by `dvc exp run` in the stage's environment
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
        tags["dvc.exp_baseline_rev"] = os.environ.get("DVC_EXP_BASELINE_REV", "")
    with store_lock(uri):  # two jobs must not both create the experiment or the parent run
        experiment_id = retrying(_experiment_id, uri, experiment)
        if sweep_id:
            tags[SWEEP_TAG] = sweep_id
            tags[PARENT_TAG] = retrying(_sweep_parent, experiment_id, sweep_id)
    if continue_run and _resumable(continue_run):
        run = retrying(mlflow.start_run, run_id=continue_run)
        set_tags(tags)
    else:
        run = retrying(mlflow.start_run, experiment_id=experiment_id, run_name=run_name, tags=tags)
    _reap_orphans(experiment_id, tags.get("cnnlab.stage"), run.info.run_id)
    sampler = _start_system_metrics(run.info.run_id, system_metrics_interval,
                                    resumed=run.info.run_id == continue_run)
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except StageInterrupted:
        status = "KILLED"
        raise
    finally:
        _end_run(run.info.run_id, status, sampler)


def _resumable(run_id: str) -> bool:
    try:
        return MlflowClient().get_run(run_id).info.lifecycle_stage == "active"
    except Exception:  # noqa: BLE001 - a run deleted or from another store: start afresh
        return False


def _reap_orphans(experiment_id: str, stage: str | None, current: str) -> None:
    """Mark KILLED the RUNNING runs of `stage` that nothing runs any more: on this host, their
    process has died; on another host, the SLURM job they were part of has ended."""
    if not stage:
        return
    client = MlflowClient()
    query = f"tags.`cnnlab.stage` = '{stage}' and attributes.status = 'RUNNING'"
    for run in retrying(client.search_runs, [experiment_id], query):
        tags = run.data.tags
        pid, job = tags.get("cnnlab.pid", ""), tags.get(JOB_TAG)
        if run.info.run_id == current:
            continue
        if tags.get("cnnlab.host") == socket.gethostname():
            why = "process died" if pid.isdigit() and not process_alive(int(pid)) else None
        else:  # another host's process cannot be asked; its job can (None: no SLURM here)
            why = f"SLURM job {job} ended" if job and job_alive(job) is False else None
        if why:
            retrying(client.set_tag, run.info.run_id, "cnnlab.ended", why)
            retrying(client.set_terminated, run.info.run_id, "KILLED")


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (one owned by another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _start_system_metrics(run_id: str, interval: float, resumed: bool
                          ) -> SystemMetricsMonitor | None:
    """MLflow's system metrics sampler on `run_id`, started; None when off or when it cannot
    start (a stage never fails for want of resource figures)."""
    if interval <= 0:
        return None
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        sampler = SystemMetricsMonitor(run_id, sampling_interval=interval, resume_logging=resumed)
        sampler.start()
        return sampler
    except Exception as exc:  # noqa: BLE001 - psutil missing, a store that stopped answering
        print(f"tracking: no system metrics for this run ({type(exc).__name__}: {exc})",
              file=sys.stderr)
        return None


def _stop_system_metrics(sampler: SystemMetricsMonitor, send: bool) -> None:
    """Stop the sampler; `send`: with its last samples (the store answers), else at once."""
    if send:
        sampler.finish()  # joins the sampler thread; bounded by the HTTP timeouts of __init__
    else:
        sampler._shutdown_event.set()  # MLflow's finish() would wait on the dead store


def _end_run(run_id: str, status: str, sampler: SystemMetricsMonitor | None = None) -> None:
    """End the active run; if the store is down, the outbox ends it later."""
    try:
        if outbox.is_down():
            raise ConnectionError("the tracking store is down")
        if sampler:
            _stop_system_metrics(sampler, send=True)  # while the run is RUNNING: it logs to it
        mlflow.end_run(status)
    except Exception:  # noqa: BLE001 - any failure to reach the store
        if sampler:
            _stop_system_metrics(sampler, send=False)
        outbox.keep({"kind": "end", "run_id": run_id, "status": status}, [])
        with contextlib.suppress(Exception):
            mlflow.tracking.fluent._active_run_stack.get().clear()


def active_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


# --- what a run carries ----------------------------------------------------------------------

@rank_zero
def log_params(cfg: Mapping[str, Any]) -> None:
    params = {k: str(v)[:6000] for k, v in flatten(cfg).items()}
    items = list(params.items())
    for i in range(0, len(items), 100):
        outbox.send({"kind": "params", "params": dict(items[i:i + 100])})


@rank_zero
def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    if metrics:
        outbox.send({"kind": "metrics", "metrics": dict(metrics), "step": step or 0,
                     "timestamp": int(time.time() * 1000)})


@rank_zero
def set_tags(tags: Mapping[str, Any]) -> None:
    outbox.send({"kind": "tags", "tags": {k: str(v) for k, v in tags.items()}})


@rank_zero
def log_files(files: list[Path]) -> None:
    """Log output files as artifacts, each under the folder it has below the project."""
    base = Path.cwd().resolve()
    for path in files:
        resolved = Path(path).resolve()
        if resolved.stat().st_size > ARTIFACT_LIMIT:
            continue
        folder = resolved.parent.relative_to(base).as_posix() \
            if resolved.is_relative_to(base) else resolved.parent.name
        outbox.send({"kind": "artifact", "path": str(resolved),
                     "folder": None if folder == "." else folder}, [resolved])


@rank_zero
def log_images(files: list[Path], folder: str = "figures") -> None:
    """Figures that exist for the dashboard only (not outputs), under `folder`."""
    for path in files:
        outbox.send({"kind": "artifact", "path": str(path), "folder": folder}, [Path(path)])


@rank_zero
def log_dataset(name: str, digest: str, source: str, context: str = "training") -> None:
    """The run's dataset, as the dashboard's Datasets panel shows it."""
    outbox.send({"kind": "dataset", "name": name, "digest": digest, "source": source,
                 "context": context})


@rank_zero
def log_model(model: Any, example: Any, registered_name: str | None,
              description: str = "") -> None:
    """Log a model (a traced graph that serves without cnnlab) and register it by name, with
    `description` on the registered version."""
    import mlflow.pytorch
    import torch

    try:
        info = retrying(mlflow.pytorch.log_model, model, name="model",
                        input_example=example.numpy(), registered_model_name=registered_name,
                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        if registered_name and info.registered_model_version and description:
            retrying(MlflowClient().update_model_version, registered_name,
                     info.registered_model_version, description=description)
    except Exception as exc:  # noqa: BLE001 - an outage must not cost the training
        outbox.mark_down()
        print(f"tracking: the model was not logged ({type(exc).__name__}); its checkpoint is "
              "a DVC output", file=sys.stderr)
