"""The model a user names, and the prepared dataset whose preprocessing its inputs need.

`mnist_cnn` is an experiment: its checkpoint `<paths.models>/mnist_cnn/model.ckpt` and its
dataset `train.mnist_cnn.dataset` of conf/. `mnist_cnn:3`, `models:/mnist_cnn/3`,
`models:/mnist_cnn/latest` or `models:/mnist_cnn@alias` are registered MLflow models (the
tracking store, `cnnlab.core.paths.tracking_uri`); their dataset is the `cnnlab.dataset` tag of the
run that logged them. A bare name without a checkpoint is the latest registered version.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import CheckpointError, DataError
from cnnlab.core.paths import tracking_uri
from cnnlab.data.prepared import read_manifest
from cnnlab.training.checkpoint import load_checkpoint


@dataclass
class Model:
    """A model ready to predict: its logits function, classes and prepared dataset."""

    name: str  # as resolved: "mnist_cnn" or "models:/mnist_cnn/3"
    source: str  # the checkpoint file or the registered model's artifacts
    data_dir: Path
    manifest: dict[str, Any]
    logits: Callable[[torch.Tensor], torch.Tensor]  # model inputs (as_model_input) -> logits

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.manifest["classes"]]


def resolve(spec: str, experiments: dict[str, Any], models_dir: Path, prepared: Path) -> Model:
    """The model `spec` names; `experiments` is the config's `train` section."""
    if spec.startswith("models:/"):
        return _registered(spec, experiments, prepared)
    name, _, version = spec.partition(":")
    checkpoint = models_dir / name / "model.ckpt"
    if not version and checkpoint.is_file():
        return _checkpoint(name, checkpoint, experiments, prepared)
    return _registered(f"models:/{name}/{version or 'latest'}", experiments, prepared,
                       hint=f", and no checkpoint {checkpoint}" if not version else "")


def _checkpoint(name: str, path: Path, experiments: dict[str, Any], prepared: Path) -> Model:
    if name not in experiments:
        raise CheckpointError(f"{name}: {path} exists but conf/ has no experiment train.{name} "
                              f"to say its dataset (experiments: {sorted(experiments)})")
    data_dir = prepared / str(experiments[name]["dataset"])
    manifest = read_manifest(data_dir)
    model, meta = load_checkpoint(path)
    for key in ("classes", "input_shape"):
        if list(meta[key]) != list(manifest[key]):
            raise DataError(f"{data_dir}: its {key} {manifest[key]} are not those of {path} "
                            f"({meta[key]}): not the data the model was trained on")

    def logits(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x)

    return Model(name, str(path), data_dir, manifest, logits)


def _parse(uri: str) -> tuple[str, str | None, str | None]:
    """models:/name/version, models:/name/latest or models:/name@alias -> name, version, alias."""
    rest = uri.removeprefix("models:/")
    if "@" in rest:
        name, _, alias = rest.partition("@")
        return name, None, alias
    name, _, version = rest.partition("/")
    return name, (None if version in ("", "latest") else version), None


def _registered(uri: str, experiments: dict[str, Any], prepared: Path, hint: str = "") -> Model:
    import cnnlab.core.tracking  # noqa: F401 - sets MLflow's environment: before MLflow loads
    # isort: split
    import mlflow
    from mlflow import MlflowClient

    store = tracking_uri()
    name, version, alias = _parse(uri)
    if store.startswith("sqlite:///") and not Path(store.removeprefix("sqlite:///")).is_file():
        raise CheckpointError(f"{uri}: no such registered model (no tracking store at {store}){hint}")
    client = MlflowClient(store)
    try:
        if alias:
            found = client.get_model_version_by_alias(name, alias)
        elif version:
            found = client.get_model_version(name, version)
        else:
            versions = client.search_model_versions(f"name = '{name}'")
            if not versions:
                raise CheckpointError(f"{uri}: no such registered model in {store}{hint}")
            found = max(versions, key=lambda v: int(v.version))
        run = client.get_run(found.run_id)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow and SQLAlchemy raise many types
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{uri}: no such registered model in {store} ({reason}){hint}") from None
    dataset = run.data.tags.get("cnnlab.dataset") or experiments.get(name, {}).get("dataset")
    if not dataset:
        raise CheckpointError(f"{uri}: its run {found.run_id} has no cnnlab.dataset tag and conf/ "
                              f"has no experiment train.{name}: which data it takes is unknown")
    data_dir = prepared / str(dataset)
    manifest = read_manifest(data_dir)
    _check_trained_on(uri, run.data.params, data_dir, manifest)
    resolved = f"models:/{name}/{found.version}"
    mlflow.set_tracking_uri(store)
    try:
        with warnings.catch_warnings():  # torch.export's note on read-only buffers
            warnings.simplefilter("ignore", UserWarning)
            pyfunc = mlflow.pyfunc.load_model(resolved)
    except Exception as exc:  # noqa: BLE001 - a missing or broken artifact, in many types
        raise CheckpointError(f"{resolved}: cannot load the model ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None

    def logits(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(pyfunc.predict(x.numpy())))

    return Model(resolved, str(found.source), data_dir, manifest, logits)


def _check_trained_on(uri: str, params: dict[str, str], data_dir: Path,
                      manifest: dict[str, Any]) -> None:
    """Warn when the prepared files differ from those the run recorded (e.g. re-prepared)."""
    prefix = "data_manifest_sha256."
    recorded = {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
    files = manifest.get("files", {})
    if recorded and any(files.get(k) != v for k, v in recorded.items()):
        print(f"warning: {data_dir} is not the data {uri} was trained on (its files changed "
              "since); predictions use its current preprocessing", file=sys.stderr)
