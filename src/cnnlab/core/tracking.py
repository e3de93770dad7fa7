"""MLflow, resolved in one place: where runs go, how they are grouped, what they carry.

Every call to MLflow in cnnlab goes through this module; it is the seam for what a shared
store needs:
- rank zero: in a multi-process (DDP) run only rank 0 logs, so a training is one run;
- concurrency: schema creation, experiment creation and a sweep's parent run happen under a
  file lock, and writes that meet a busy SQLite database are retried, so parallel jobs on a
  fresh store lose nothing;
- outages: a server that is down when a stage starts fails the stage within seconds, in one
  line. One that goes down during a stage never costs the stage: what cannot be sent is kept
  in an outbox on disk (`<project root>/.cnnlab/outbox/`), and
  `python -m cnnlab.core.tracking replay` sends it once the server is back;
- orphans: a run carries its host and process id; a stage that starts marks the RUNNING runs
  of its own stage whose process has died as KILLED.

The default store is `sqlite:///<project root>/mlflow.db` with an absolute path. DVC runs
queued or `--temp` experiments in copies under `<root>/.dvc/tmp/exps/`; those copies resolve
to the original root, so every run lands in the one database. `MLFLOW_TRACKING_URI` wins.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# a dead server should cost seconds, not MLflow's default of minutes of retries per call
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

import mlflow  # noqa: E402
from filelock import FileLock  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from cnnlab.core.devices import is_rank_zero  # noqa: E402
from cnnlab.core.errors import StageInterrupted, TrackingError  # noqa: E402

for _chatty in ("mlflow", "alembic"):  # schema creation and registry notes: not for the console
    logging.getLogger(_chatty).setLevel(logging.WARNING)

SWEEP_TAG = "cnnlab.sweep"
PARENT_TAG = "mlflow.parentRunId"
LOCK_TIMEOUT = 120  # seconds to wait for another process's schema or experiment creation
RETRIES = 12  # attempts of a write that meets a locked SQLite database (about 10 s in all)
PAUSE_AFTER_FAILURE = 30.0  # seconds during which calls go straight to the outbox
T = TypeVar("T")
_ready: set[str] = set()  # stores this process has already prepared
_down_until = 0.0  # monotonic time until which the store counts as down


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
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{project_root(start) / 'mlflow.db'}"


def lock_path(uri: str) -> Path:
    """The file lock of a store: beside a SQLite database, else one per store in the temp dir."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///") + ".lock")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"cnnlab-tracking-{digest}.lock"


def store_lock(uri: str) -> FileLock:
    path = lock_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path, timeout=LOCK_TIMEOUT)


def configure(start: str | Path | None = None) -> str:
    """Point MLflow at the store; a new SQLite store gets its schema once, under the lock; a
    server must answer now (TrackingError otherwise, within about 10 s)."""
    uri = tracking_uri(start)
    mlflow.set_tracking_uri(uri)
    if uri not in _ready:
        if uri.startswith(("http://", "https://")):
            check_server(uri)
        with store_lock(uri):
            retrying(MlflowClient(uri).search_experiments, max_results=1)  # creates the schema
        _ready.add(uri)
    return uri


def check_server(uri: str, attempts: int = 3) -> None:
    import requests

    for attempt in range(attempts):
        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=2).raise_for_status()
            return
        except requests.RequestException as exc:
            reason = type(exc).__name__
            if attempt < attempts - 1:
                time.sleep(1.0)
    source = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "the default"
    raise TrackingError(f"tracking server {uri} is unreachable ({reason}); it comes from "
                        f"{source}: start the server, or unset MLFLOW_TRACKING_URI to log to "
                        "the project's mlflow.db")


def retrying(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, tried again while a concurrent writer holds the SQLite database."""
    for attempt in range(RETRIES):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - MLflow wraps SQLAlchemy's errors in several types
            if "database is locked" not in str(exc) or attempt == RETRIES - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (1 + random.random()))
    raise AssertionError("unreachable")


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a SQLite store live beside the database, never in the current directory.

    (MLflow's default, `./mlruns`, would scatter them into DVC's temporary copies.)
    A server URI keeps the server's own artifact store.
    """
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / experiment).as_uri()


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


def rank_zero(fn: Callable[..., None]) -> Callable[..., None]:
    """A logging call that only rank 0 of a multi-process run makes."""

    @functools.wraps(fn)
    def logged(*args: Any, **kwargs: Any) -> None:
        if is_rank_zero():
            fn(*args, **kwargs)

    return logged


@rank_zero
def log_params(cfg: Mapping[str, Any]) -> None:
    params = {k: str(v)[:6000] for k, v in flatten(cfg).items()}
    items = list(params.items())
    for i in range(0, len(items), 100):
        _send({"kind": "params", "params": dict(items[i:i + 100])})


def _experiment_id(uri: str, experiment: str) -> str:
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    return mlflow.create_experiment(experiment, artifact_location=artifact_location(uri, experiment))


def _sweep_parent(experiment_id: str, sweep_id: str) -> str:
    """The run that groups a Hydra multirun in the dashboard; created by the first job."""
    client = MlflowClient()
    found = client.search_runs([experiment_id],
                               f"tags.`{SWEEP_TAG}` = '{sweep_id}' and tags.`cnnlab.role` = 'sweep'")
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=f"sweep {sweep_id}",
                            tags={SWEEP_TAG: sweep_id, "cnnlab.role": "sweep"})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


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
    found = retrying(client.search_runs, experiments, f"tags.`{SWEEP_TAG}` = '{sweep_id}' and "
                     "tags.`cnnlab.role` = 'sweep'", max_results=1)
    if not found:
        return None
    run_id, logged = found[0].info.run_id, found[0].data.params
    stamp = int(time.time() * 1000)
    for entry in ({"kind": "metrics", "metrics": dict(metrics), "step": step, "timestamp": stamp},
                  {"kind": "params", "params": {k: str(v) for k, v in params.items()
                                                if k not in logged}},
                  {"kind": "tags", "tags": {k: str(v) for k, v in tags.items()}}):
        retrying(_apply, client, {"run_id": run_id, **entry})
    return run_id


@contextlib.contextmanager
def stage_run(experiment: str, run_name: str, tags: Mapping[str, str] | None = None,
              sweep_id: str | None = None, continue_run: str | None = None
              ) -> Iterator[mlflow.ActiveRun | None]:
    """One run in MLflow experiment `experiment` around a stage; a sweep's runs share a parent.

    `continue_run`: the id of an interrupted run of the same stage to carry on (resume).
    The run ends FINISHED, FAILED, or KILLED when a signal stopped the stage. Yields None,
    and logs nothing, on a non-zero rank of a multi-process run.
    """
    if not is_rank_zero():
        yield None
        return
    uri = configure()
    tags = {**(tags or {}), "cnnlab.host": socket.gethostname(), "cnnlab.pid": str(os.getpid())}
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
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except StageInterrupted:
        status = "KILLED"
        raise
    finally:
        _end_run(run.info.run_id, status)


def _resumable(run_id: str) -> bool:
    try:
        return MlflowClient().get_run(run_id).info.lifecycle_stage == "active"
    except Exception:  # noqa: BLE001 - a run deleted or from another store: start afresh
        return False


def _reap_orphans(experiment_id: str, stage: str | None, current: str) -> None:
    """Mark KILLED the RUNNING runs of `stage` whose process on this host has died."""
    if not stage:
        return
    client = MlflowClient()
    query = f"tags.`cnnlab.stage` = '{stage}' and attributes.status = 'RUNNING'"
    for run in retrying(client.search_runs, [experiment_id], query):
        pid, host = run.data.tags.get("cnnlab.pid", ""), run.data.tags.get("cnnlab.host")
        if run.info.run_id == current or host != socket.gethostname() or not pid.isdigit():
            continue
        if not process_alive(int(pid)):
            retrying(client.set_tag, run.info.run_id, "cnnlab.ended", "process died")
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


def _end_run(run_id: str, status: str) -> None:
    """End the active run; if the store is down, the outbox ends it later."""
    try:
        if time.monotonic() < _down_until:
            raise ConnectionError("the tracking store is down")
        mlflow.end_run(status)
    except Exception:  # noqa: BLE001 - any failure to reach the store
        _to_outbox({"kind": "end", "run_id": run_id, "status": status}, [])
        with contextlib.suppress(Exception):
            mlflow.tracking.fluent._active_run_stack.get().clear()


def active_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def numeric(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics as flat dotted names, numbers only (what MLflow takes)."""
    return {name: float(value) for name, value in flatten(metrics, prefix).items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


@rank_zero
def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    if metrics:
        _send({"kind": "metrics", "metrics": dict(metrics), "step": step or 0,
               "timestamp": int(time.time() * 1000)})


@rank_zero
def set_tags(tags: Mapping[str, Any]) -> None:
    _send({"kind": "tags", "tags": {k: str(v) for k, v in tags.items()}})


ARTIFACT_LIMIT = 50 * 2**20  # bigger outputs (prepared datasets) are DVC's to store, not MLflow's


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
        _send({"kind": "artifact", "path": str(resolved),
               "folder": None if folder == "." else folder}, [resolved])


@rank_zero
def log_images(files: list[Path], folder: str = "figures") -> None:
    """Figures that exist for the dashboard only (not outputs), under `folder`."""
    for path in files:
        _send({"kind": "artifact", "path": str(path), "folder": folder}, [Path(path)])


@rank_zero
def log_dataset(name: str, digest: str, source: str, context: str = "training") -> None:
    """The run's dataset, as the dashboard's Datasets panel shows it."""
    _send({"kind": "dataset", "name": name, "digest": digest, "source": source,
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
        _mark_down()
        print(f"tracking: the model was not logged ({type(exc).__name__}); its checkpoint is "
              "a DVC output", file=sys.stderr)


# --- sending, and the outbox for what could not be sent ------------------------------------

def _apply(client: MlflowClient, entry: Mapping[str, Any]) -> None:
    """Carry out one logging entry against the store."""
    from mlflow.entities import Metric, Param, RunTag

    run_id, kind = entry["run_id"], entry["kind"]
    if kind == "metrics":
        client.log_batch(run_id, metrics=[Metric(k, float(v), entry["timestamp"], entry["step"])
                                          for k, v in entry["metrics"].items()])
    elif kind == "params":
        client.log_batch(run_id, params=[Param(k, v) for k, v in entry["params"].items()])
    elif kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in entry["tags"].items()])
    elif kind == "artifact":
        client.log_artifact(run_id, entry["path"], artifact_path=entry["folder"])
    elif kind == "dataset":
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(entry["name"], entry["digest"], "local", entry["source"])
        client.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context",
                                                                   entry["context"])])])
    elif kind == "end":
        client.set_terminated(run_id, entry["status"])


def _mark_down() -> None:
    global _down_until
    if time.monotonic() >= _down_until:
        print(f"tracking: {mlflow.get_tracking_uri()} is not answering; keeping what cannot be "
              f"sent in {outbox_dir()} (send it later: python -m cnnlab.core.tracking replay)",
              file=sys.stderr)
    _down_until = time.monotonic() + PAUSE_AFTER_FAILURE


def _send(entry: dict[str, Any], files: list[Path] | None = None) -> None:
    """Log `entry` to the active run now, or keep it in the outbox if the store is down."""
    entry = {"run_id": mlflow.active_run().info.run_id, **entry} if mlflow.active_run() \
        else entry
    if "run_id" not in entry:  # no run: nothing to attach the entry to
        return
    if time.monotonic() >= _down_until:
        try:
            retrying(_apply, MlflowClient(), entry)
            return
        except Exception:  # noqa: BLE001 - any failure to reach the store
            _mark_down()
    _to_outbox(entry, files or [])


def state_dir() -> Path:
    """Where cnnlab keeps what is neither an output nor a run: resume state, the outbox.

    `<project root>/.cnnlab` (git-ignored), or `CNNLAB_STATE_DIR`.
    """
    return Path(os.environ.get("CNNLAB_STATE_DIR") or project_root() / ".cnnlab")


def outbox_dir() -> Path:
    return state_dir() / "outbox"


def _to_outbox(entry: dict[str, Any], files: list[Path]) -> None:
    """Append `entry` to its run's outbox file; artifacts are copied, as outputs change."""
    folder = outbox_dir() / entry["run_id"]
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        copy = folder / "files" / hashlib.sha256(str(path).encode()).hexdigest()[:16] / path.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        entry = {**entry, "path": str(copy)}
    with open(folder / "entries.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"uri": mlflow.get_tracking_uri(), **entry}) + "\n")


def replay(uri: str | None = None) -> tuple[int, int]:
    """Send every kept entry to its store, oldest first; returns (entries, runs) sent.

    A run's outbox is removed only when all of its entries went through.
    """
    sent = runs = 0
    for folder in sorted(outbox_dir().glob("*")) if outbox_dir().is_dir() else []:
        entries = [json.loads(line) for line in
                   (folder / "entries.jsonl").read_text(encoding="utf-8").splitlines() if line]
        for entry in entries:
            client = MlflowClient(uri or entry["uri"])
            retrying(_apply, client, entry)
        sent += len(entries)
        runs += 1
        shutil.rmtree(folder)
    return sent, runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cnnlab.core.tracking",
                                     description="Send the tracking outbox to its store.")
    parser.add_argument("command", choices=["replay"])
    parser.add_argument("--uri", help="send to this store instead of the one each entry names")
    args = parser.parse_args(argv)
    try:
        sent, runs = replay(args.uri)
    except Exception as exc:  # noqa: BLE001 - the store is still down: say so in one line
        raise SystemExit(f"error: replay stopped, the store did not answer ({exc}); the "
                         f"outbox in {outbox_dir()} is kept") from None
    print(f"replayed {sent} entries of {runs} run(s) from {outbox_dir()}")


if __name__ == "__main__":
    main()
