"""A tiny real training run: outputs, determinism, tracking, clean config errors."""

import json
import subprocess
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from cnnlab.core.errors import CheckpointError, ConfigError
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.training.run import RunOutputs, train_experiment
from tests.conftest import ROOT


def outputs_in(tmp_path, name="mnist_cnn"):
    return RunOutputs.under(tmp_path / "models", tmp_path / "metrics", tmp_path / "plots", name)


def test_training_writes_outputs_and_tracks_them(tmp_path, tiny_mnist, tiny_experiment):
    out = outputs_in(tmp_path)
    metrics = train_experiment("mnist_cnn", tiny_experiment(max_epochs=2), tiny_mnist, out)
    assert metrics["params"] == 137_660 and metrics["epochs"] == 2
    assert 0.0 <= metrics["test_acc"] <= 1.0
    assert json.loads(out.metrics.read_text())["test_acc"] == metrics["test_acc"]
    history = out.history.read_text().splitlines()
    assert history[0] == "epoch,train_loss,train_acc,val_loss,val_acc,seconds"
    assert len(history) == 3

    model, meta = load_checkpoint(out.checkpoint)
    assert meta["experiment"] == "mnist_cnn" and meta["classes"][0] == "0"
    assert sum(p.numel() for p in model.parameters()) == 137_660

    client = MlflowClient()
    run = client.get_run(metrics["mlflow_run_id"])
    assert run.data.params["model.conv"].startswith("[{'channels': 25")
    assert run.data.params["trainer.max_epochs"] == "2"
    assert run.data.metrics["test_acc"] == pytest.approx(metrics["test_acc"])
    assert run.data.metrics["params"] == 137_660
    val_history = client.get_metric_history(run.info.run_id, "val_acc")
    assert [m.step for m in val_history] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.ckpt", "mnist_cnn.json", "mnist_cnn.csv"} <= artifacts
    versions = client.search_model_versions("name='mnist_cnn'")
    assert [v.run_id for v in versions] == [run.info.run_id]


def test_same_config_gives_the_same_metrics_twice(tmp_path, tiny_mnist, tiny_experiment):
    cfg = tiny_experiment("mnist_separable", register_model=False)
    cfg["register_model"] = False
    a = train_experiment("s", cfg, tiny_mnist, outputs_in(tmp_path / "a", "s"))
    b = train_experiment("s", cfg, tiny_mnist, outputs_in(tmp_path / "b", "s"))
    assert a["test_loss"] == b["test_loss"] and a["test_acc"] == b["test_acc"]
    sa = torch.load(tmp_path / "a/models/s/model.ckpt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b/models/s/model.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_trainer_threads_apply_while_training_only(tmp_path, tiny_mnist, tiny_experiment,
                                                  monkeypatch):
    from cnnlab.training.module import Classifier

    seen, step = [], Classifier.training_step

    def recording_step(self, batch, batch_idx):
        seen.append(torch.get_num_threads())
        return step(self, batch, batch_idx)

    monkeypatch.setattr(Classifier, "training_step", recording_step)
    before = torch.get_num_threads()
    cfg = tiny_experiment(max_epochs=1)
    cfg["trainer"]["threads"] = 1
    cfg["register_model"] = False
    train_experiment("t", cfg, tiny_mnist, outputs_in(tmp_path, "t"))
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_impossible_geometry_stops_before_training(tmp_path, tiny_mnist, tiny_experiment):
    cfg = tiny_experiment()
    cfg["model"]["conv"] = [{"channels": 4, "kernel": 9}] * 3
    with pytest.raises(ConfigError, match=r"model.conv\[2\]"):
        train_experiment("mnist_cnn", cfg, tiny_mnist, outputs_in(tmp_path))
    assert not (tmp_path / "models").exists()
    assert MlflowClient().search_experiments(filter_string="name='mnist_cnn'") == []


@pytest.mark.parametrize("content", [None, b"garbage", b"PK\x03\x04 truncated zip"])
def test_missing_or_corrupt_checkpoint_names_the_file(tmp_path, content):
    path = tmp_path / "model.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_train_stage_reports_a_bad_geometry_in_one_line(tmp_path, tiny_mnist):
    result = subprocess.run(
        [sys.executable, "pipelines/train.py", "run=mnist_cnn", f"paths.prepared={tiny_mnist.parent}",
         f"paths.models={tmp_path}/m", "train.mnist_cnn.model.conv.0.kernel=40"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "error: model.conv[0]: input 28x28 with window (40, 40)" in result.stderr
    assert "Traceback" not in result.stderr


def test_hydra_multirun_logs_each_job_under_one_parent(tmp_path, tiny_mnist, isolated_mlflow):
    shrink = [f"train.mnist_cnn.trainer.{k}={v}" for k, v in
              {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1,
               "limit_test_batches": 1}.items()]
    result = subprocess.run(
        [sys.executable, "pipelines/train.py", "-m", "run=mnist_cnn",
         "train.mnist_cnn.model.conv.0.channels=4,8", "train.mnist_cnn.register_model=false",
         f"paths.prepared={tiny_mnist.parent}", f"hydra.sweep.dir={tmp_path}/sweep", *shrink],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    client = MlflowClient()
    exp = client.get_experiment_by_name("mnist_cnn")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("cnnlab.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and len(children) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(r.data.params["model.conv"][:15] for r in children) == [
        "[{'channels': 4", "[{'channels': 8"]
    for job in ("0", "1"):  # outputs stay in the sweep dir, never over the DVC outputs
        assert (tmp_path / "sweep" / job / "metrics" / "mnist_cnn.json").is_file()
