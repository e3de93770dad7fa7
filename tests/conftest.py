"""Fixtures that compose the real conf/ and shrink it, as the pipeline would run it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

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
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides or [])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path, monkeypatch):
    """Every test logs to its own SQLite store and keeps its own state, never the project's."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("CNNLAB_STATE_DIR", str(tmp_path / "state"))  # resume state, outbox
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    """A prepared MNIST of 1,000 train / 500 val / 500 test digits from the bundled data."""
    from cnnlab.data import mnist
    from cnnlab.data.prepared import write_prepared

    out = tmp_path_factory.mktemp("prepared") / "mnist"
    out.mkdir()
    arrays, provenance = mnist.load_source(compose_config()["data"]["mnist"])
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
