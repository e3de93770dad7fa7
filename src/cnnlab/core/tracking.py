"""MLflow, resolved in one place: where runs go, how they are grouped, what they carry.

The default store is `sqlite:///<project root>/mlflow.db` with an absolute path. DVC runs
queued or `--temp` experiments in copies under `<root>/.dvc/tmp/exps/`; those copies resolve
to the original root, so every run lands in the one database. `MLFLOW_TRACKING_URI` wins.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

for _chatty in ("mlflow", "alembic"):  # schema creation and registry notes: not for the console
    logging.getLogger(_chatty).setLevel(logging.WARNING)

SWEEP_TAG = "cnnlab.sweep"
PARENT_TAG = "mlflow.parentRunId"


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


def configure(start: str | Path | None = None) -> str:
    uri = tracking_uri(start)
    mlflow.set_tracking_uri(uri)
    return uri


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


def log_params(cfg: Mapping[str, Any]) -> None:
    params = {k: str(v)[:6000] for k, v in flatten(cfg).items()}
    items = list(params.items())
    for i in range(0, len(items), 100):
        mlflow.log_params(dict(items[i:i + 100]))


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
              sweep_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """One run in MLflow experiment `experiment` around a stage; a sweep's runs share a parent."""
    uri = configure()
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=artifact_location(uri, experiment))
    exp = mlflow.set_experiment(experiment)
    tags = dict(tags or {})
    if sweep_id:
        tags[SWEEP_TAG] = sweep_id
        tags[PARENT_TAG] = _sweep_parent(exp.experiment_id, sweep_id)
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        yield run


def numeric(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested metrics as flat dotted names, numbers only (what MLflow takes)."""
    return {name: float(value) for name, value in flatten(metrics, prefix).items()
            if isinstance(value, int | float) and not isinstance(value, bool)}


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    if metrics:
        mlflow.log_metrics(dict(metrics), step=step)


def set_tags(tags: Mapping[str, Any]) -> None:
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


ARTIFACT_LIMIT = 50 * 2**20  # bigger outputs (prepared datasets) are DVC's to store, not MLflow's


def log_files(files: list[Path]) -> None:
    """Log output files as artifacts, each under the folder it has below the project."""
    base = Path.cwd().resolve()
    for path in files:
        resolved = Path(path).resolve()
        if resolved.stat().st_size > ARTIFACT_LIMIT:
            continue
        folder = resolved.parent.relative_to(base).as_posix() \
            if resolved.is_relative_to(base) else resolved.parent.name
        mlflow.log_artifact(str(resolved), artifact_path=None if folder == "." else folder)


def log_model(model: Any, example: Any, registered_name: str | None) -> None:
    """Log a model (a traced graph that serves without cnnlab) and register it by name."""
    import mlflow.pytorch
    import torch

    mlflow.pytorch.log_model(model, name="model", input_example=example.numpy(),
                             registered_model_name=registered_name,
                             pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
