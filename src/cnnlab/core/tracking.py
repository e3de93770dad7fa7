"""MLflow, resolved in one place: where runs go, how they are grouped, what they carry.

Every call to MLflow in cnnlab goes through this module; it is the seam for what a shared
store needs:
- rank zero: in a multi-process (DDP) run only rank 0 logs, so a training is one run;
- concurrency: schema creation, experiment creation and a sweep's parent run happen under a
  file lock, and writes that meet a busy SQLite database are retried, so parallel jobs on a
  fresh store lose nothing.

The default store is `sqlite:///<project root>/mlflow.db` with an absolute path. DVC runs
queued or `--temp` experiments in copies under `<root>/.dvc/tmp/exps/`; those copies resolve
to the original root, so every run lands in the one database. `MLFLOW_TRACKING_URI` wins.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
from filelock import FileLock  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from cnnlab.core.devices import is_rank_zero  # noqa: E402

for _chatty in ("mlflow", "alembic"):  # schema creation and registry notes: not for the console
    logging.getLogger(_chatty).setLevel(logging.WARNING)

SWEEP_TAG = "cnnlab.sweep"
PARENT_TAG = "mlflow.parentRunId"
LOCK_TIMEOUT = 120  # seconds to wait for another process's schema or experiment creation
RETRIES = 12  # attempts of a write that meets a locked SQLite database (about 10 s in all)
T = TypeVar("T")
_ready: set[str] = set()  # stores this process has already prepared


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
    """Point MLflow at the store; a new SQLite store gets its schema once, under the lock."""
    uri = tracking_uri(start)
    mlflow.set_tracking_uri(uri)
    if uri not in _ready:
        with store_lock(uri):
            retrying(MlflowClient(uri).search_experiments, max_results=1)  # creates the schema
        _ready.add(uri)
    return uri


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
        retrying(mlflow.log_params, dict(items[i:i + 100]))


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


@contextlib.contextmanager
def stage_run(experiment: str, run_name: str, tags: Mapping[str, str] | None = None,
              sweep_id: str | None = None) -> Iterator[mlflow.ActiveRun | None]:
    """One run in MLflow experiment `experiment` around a stage; a sweep's runs share a parent.

    Yields None, and logs nothing, on a non-zero rank of a multi-process run.
    """
    if not is_rank_zero():
        yield None
        return
    uri = configure()
    tags = dict(tags or {})
    with store_lock(uri):  # two jobs must not both create the experiment or the parent run
        experiment_id = retrying(_experiment_id, uri, experiment)
        if sweep_id:
            tags[SWEEP_TAG] = sweep_id
            tags[PARENT_TAG] = retrying(_sweep_parent, experiment_id, sweep_id)
    run = retrying(mlflow.start_run, experiment_id=experiment_id, run_name=run_name, tags=tags)
    with run:
        yield run


def numeric(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics as flat dotted names, numbers only (what MLflow takes)."""
    return {name: float(value) for name, value in flatten(metrics, prefix).items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


@rank_zero
def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    if metrics:
        retrying(mlflow.log_metrics, dict(metrics), step=step)


@rank_zero
def set_tags(tags: Mapping[str, Any]) -> None:
    retrying(mlflow.set_tags, {k: str(v) for k, v in tags.items()})


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
        retrying(mlflow.log_artifact, str(resolved), artifact_path=None if folder == "." else folder)


@rank_zero
def log_model(model: Any, example: Any, registered_name: str | None) -> None:
    """Log a model (a traced graph that serves without cnnlab) and register it by name."""
    import mlflow.pytorch
    import torch

    retrying(mlflow.pytorch.log_model, model, name="model", input_example=example.numpy(),
             registered_model_name=registered_name,
             pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
