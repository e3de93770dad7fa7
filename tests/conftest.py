"""Fixtures that compose the real conf/ and shrink it, as the pipeline would run it."""

from __future__ import annotations

import copy
import functools
import os
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

TINY_TRAINER = {"max_epochs": 1, "batch_size": 64, "limit_train_batches": 4,
                "limit_val_batches": 1, "limit_test_batches": 1}


FOLDER_MARKERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder (tests/unit -> unit, ...) unless it carries one of those marks."""
    for item in items:
        tests = ROOT / "tests"
        folder = item.path.relative_to(tests).parts[0] if item.path.is_relative_to(tests) else ""
        if folder in FOLDER_MARKERS and not any(item.get_closest_marker(m) for m in FOLDER_MARKERS):
            item.add_marker(folder)


def compose_config(overrides: list[str] | None = None) -> dict:
    """conf/config.yaml composed with `overrides`, as plain dicts."""
    cfg = compose_conf(*overrides) if overrides else _composed_groups(())  # read, not changed
    return OmegaConf.to_container(cfg, resolve=True)


def compose_conf(*overrides: str) -> DictConfig:
    """conf/ composed with `overrides`, as Hydra's `compose` does it, in a tenth of the time.

    Hydra composes in two steps: the defaults list (which file of each config group), then the
    overrides of values, applied to the composed config by `_apply_overrides_to_config`. The
    first step, 2-3 s here for conf/, depends only on the group overrides, so it runs once per
    set of them; the second is Hydra's own function. tests/unit/test_config.py checks that the
    result equals `compose`'s.
    """
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    groups = tuple(o.input_line for o in parsed if not _of_a_value(o))
    cfg = copy.deepcopy(_composed_groups(groups))
    ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if _of_a_value(o)], cfg)
    return cfg


def _of_a_value(override: Override) -> bool:
    """An override of a config value, not of a config group's choice nor of Hydra's settings."""
    key = override.key_or_group
    return (override.package is None and not override.is_sweep_override()
            and not override.is_hydra_override() and "/" not in key
            and not (ROOT / "conf" / key).is_dir())


@functools.cache
def _composed_groups(overrides: tuple[str, ...]) -> DictConfig:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store, created once per session: MLflow builds a new store's schema
    with its alembic migrations, seconds on this machine, and every test starts from a copy."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments(max_results=1)  # creates the schema
    return path


def copy_store(template: Path, path: Path) -> Path:
    """A fresh store at `path`: a copy of the session's migrated, empty one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)
    return path


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path, monkeypatch, mlflow_template):
    """Every test logs to its own SQLite store and keeps its own state, never the project's.
    The store (tmp_path/mlflow.db) is a copy of an empty one migrated once per session."""
    uri = f"sqlite:///{copy_store(mlflow_template, tmp_path / 'mlflow.db')}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("CNNLAB_STATE_DIR", str(tmp_path / "state"))  # resume state, outbox
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="session")
def bundled_mnist() -> tuple[dict, dict]:
    """The bundled MNIST source, read and checked once (seconds): its arrays, not to be changed,
    and its provenance."""
    from cnnlab.data import mnist

    return mnist.load_source(compose_config()["data"]["mnist"])


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory, bundled_mnist) -> Path:
    """A prepared MNIST of 1,000 train / 500 val / 500 test digits from the bundled data."""
    from cnnlab.data import mnist
    from cnnlab.data.prepared import write_prepared

    out = tmp_path_factory.mktemp("prepared") / "mnist"
    out.mkdir()
    arrays, provenance = bundled_mnist
    splits = mnist.make_splits(arrays, val_size=500, seed=0, max_train=1000, max_test=500)
    write_prepared(out, splits, {"dataset": "mnist", "classes": mnist.CLASSES,
                                 "input_shape": [1, 28, 28], **provenance})
    return out


@pytest.fixture
def tiny_experiment():
    """The real mnist_cnn experiment config with a trainer shrunk to a few batches."""

    def make(name: str = "mnist_cnn", **trainer) -> dict:
        exp = compose_config()["train"][name]
        exp["trainer"].update({**TINY_TRAINER, **trainer})
        return exp

    return make


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: small convolutions on a busy 2-core machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
