"""A tiny real training run through the train stage: outputs, determinism, tracking, errors."""

import hashlib
import json

import pytest
import torch
from mlflow.tracking import MlflowClient

from cnnlab.core import progress
from cnnlab.core.errors import CheckpointError, ConfigError
from cnnlab.training.checkpoint import load_checkpoint
from tests.conftest import TINY_TRAINER
from tests.stages import run_script, run_stage


def train(tmp_path, tiny_mnist, *overrides, name="mnist_cnn"):
    """Stage train@<name> on the tiny data, shrunk, every output under tmp_path."""
    shrink = [f"train.{name}.trainer.{k}={v}" for k, v in TINY_TRAINER.items()]
    return run_stage("train", f"run={name}", f"paths.prepared={tiny_mnist.parent}",
                     *(f"paths.{k}={tmp_path / k}" for k in ("models", "metrics", "plots")),
                     *shrink, *overrides)


def test_training_writes_outputs_and_tracks_them(tmp_path, tiny_mnist):
    result = train(tmp_path, tiny_mnist, "train.mnist_cnn.trainer.max_epochs=2")
    metrics = result.metrics
    assert metrics["params"] == 137_660 and metrics["epochs"] == 2
    assert json.loads((tmp_path / "metrics/mnist/mnist_cnn.json").read_text()) == metrics
    history = (tmp_path / "plots/mnist/mnist_cnn.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,train_acc,val_loss,val_acc,seconds"
    assert len(history) == 3
    assert float(history[-1].split(",")[4]) == pytest.approx(metrics["final_val_acc"], abs=1e-6)

    model, meta = load_checkpoint(tmp_path / "models/mnist_cnn/model.ckpt")
    assert meta["experiment"] == "mnist_cnn" and meta["classes"][0] == "0"
    assert sum(p.numel() for p in model.parameters()) == 137_660

    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id])
    assert run.data.params["model.conv"].startswith("[{'channels': 25")
    assert run.data.params["trainer.max_epochs"] == "2"
    assert run.data.tags["cnnlab.stage"] == "mnist_cnn"
    assert run.data.metrics["test_acc"] == pytest.approx(metrics["test_acc"])
    assert run.data.metrics["params"] == 137_660
    val_history = client.get_metric_history(run.info.run_id, "val_acc")
    assert [m.step for m in val_history] == [1, 2]
    artifacts = {a.path for folder in ("mnist_cnn", "mnist")
                 for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"mnist_cnn/model.ckpt", "mnist/mnist_cnn.json", "mnist/mnist_cnn.csv"} <= artifacts
    versions = client.search_model_versions("name='mnist_cnn'")
    assert [v.run_id for v in versions] == [run.info.run_id]
    assert f"test accuracy {metrics['test_acc']:.2%} on 500 test samples of mnist" in (
        versions[0].description)


def test_a_training_run_carries_its_figures_dataset_and_dvc_experiment(tmp_path, tiny_mnist,
                                                                       monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "wide-filters")
    train(tmp_path, tiny_mnist, "train.mnist_cnn.register_model=false")
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id])
    figures = {a.path: a.file_size for a in client.list_artifacts(run.info.run_id, "figures")}
    assert set(figures) == {"figures/training_curves.png", "figures/confusion_matrix.png"}
    assert all(size > 1000 for size in figures.values())
    (dataset,) = run.inputs.dataset_inputs
    manifest = tiny_mnist / "manifest.json"
    assert dataset.dataset.name == "mnist"
    assert dataset.dataset.digest == hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    assert json.loads(dataset.dataset.source)["path"] == str(tiny_mnist.resolve())
    assert run.data.tags["dvc.exp_name"] == "wide-filters"


def test_the_confusion_matrix_counts_every_test_sample_once(tiny_mnist):
    from cnnlab.data.prepared import load_prepared
    from cnnlab.models import InputSpec, build_model
    from cnnlab.training.batches import TensorBatches
    from cnnlab.training.figures import confusion_matrix

    data = load_prepared(tiny_mnist)
    model = build_model({"name": "mlp", "hidden": [8]}, InputSpec((1, 28, 28), 10))
    counts = confusion_matrix(model, TensorBatches(data.test.x, data.test.y, 64, False), 10)
    assert int(counts.sum()) == len(data.test.y)
    assert counts.sum(dim=1).tolist() == torch.bincount(data.test.y, minlength=10).tolist()


@pytest.mark.parametrize("mode,bars", [("auto", False), ("true", True), ("false", False)])
def test_progress_bars_only_where_asked_and_never_spam_a_log_file(tmp_path, tiny_mnist, mode,
                                                                 bars, capfd, monkeypatch):
    """The script's output captured, as into a log file (no terminal), outside CI."""
    monkeypatch.setenv("CI", "")
    monkeypatch.delenv(progress.ENV, raising=False)  # the stage sets it; restored after
    shrink = [f"train.mnist_cnn.trainer.{k}={v}" for k, v in TINY_TRAINER.items()]
    code = run_script("train", "run=mnist_cnn", f"progress={mode}",
                      f"paths.prepared={tiny_mnist.parent}", "train.mnist_cnn.register_model=false",
                      *(f"paths.{k}={tmp_path / k}" for k in ("models", "metrics", "plots")),
                      *shrink)
    out, err = capfd.readouterr()
    text = out + err
    assert code == 0, text[-2000:]
    assert ("Epoch 0/0" in text) == bars  # Lightning's bar
    assert bars or "\r" not in text  # no carriage returns in a log file unless asked for


def test_same_config_gives_the_same_metrics_twice(tmp_path, tiny_mnist):
    off = "train.mnist_separable.register_model=false"
    a = train(tmp_path / "a", tiny_mnist, off, name="mnist_separable").metrics
    b = train(tmp_path / "b", tiny_mnist, off, name="mnist_separable").metrics
    assert a["test_loss"] == b["test_loss"] and a["test_acc"] == b["test_acc"]
    sa, sb = (torch.load(tmp_path / f"{x}/models/mnist_separable/model.ckpt",
                         weights_only=True)["state_dict"] for x in "ab")
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_trainer_threads_apply_while_training_only(tmp_path, tiny_mnist, monkeypatch):
    from cnnlab.training.module import Classifier

    seen, step = [], Classifier.training_step

    def recording_step(self, batch, batch_idx):
        seen.append(torch.get_num_threads())
        return step(self, batch, batch_idx)

    monkeypatch.setattr(Classifier, "training_step", recording_step)
    before = torch.get_num_threads()
    train(tmp_path, tiny_mnist, "train.mnist_cnn.trainer.threads=1",
          "train.mnist_cnn.register_model=false")
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_impossible_geometry_stops_before_training(tmp_path, tiny_mnist):
    with pytest.raises(ConfigError, match=r"model.conv\[2\]"):
        train(tmp_path, tiny_mnist,
              "train.mnist_cnn.model.conv=[{channels:4,kernel:9},{channels:4,kernel:9},"
              "{channels:4,kernel:9}]")
    assert not list((tmp_path / "models").rglob("*"))
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id])
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("override,key", [
    ("+train.mnist_cnn.trainer.bogus=1", "train.mnist_cnn.trainer.bogus"),
    ("train.mnist_cnn.trainer.max_epochs=many", "train.mnist_cnn.trainer.max_epochs"),
    ("~train.mnist_cnn.seed", "train.mnist_cnn.seed")])
def test_a_bad_config_key_is_named_before_any_work(tmp_path, tiny_mnist, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train(tmp_path, tiny_mnist, override)
    assert not (tmp_path / "models").exists()
    assert MlflowClient().search_experiments(filter_string="name='mnist_cnn'") == []


@pytest.mark.parametrize("content", [None, b"garbage", b"PK\x03\x04 truncated zip"])
def test_missing_or_corrupt_checkpoint_names_the_file(tmp_path, content):
    path = tmp_path / "model.ckpt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_train_stage_reports_a_bad_geometry_in_one_line(tmp_path, tiny_mnist, capsys):
    code = run_script("train", "run=mnist_cnn", f"paths.prepared={tiny_mnist.parent}",
                      f"paths.models={tmp_path}/m", "train.mnist_cnn.model.conv.0.kernel=40")
    err = capsys.readouterr().err
    assert code == 2
    assert "error: model.conv[0]: input 28x28 with window (40, 40)" in err
    assert "Traceback" not in err


def test_hydra_multirun_logs_each_job_under_one_parent(tmp_path, tiny_mnist, isolated_mlflow,
                                                       capsys):
    """Hydra's basic launcher runs the jobs one after the other in the process that starts
    them: here, this one (with Hydra's logging left alone, as it would outlive the test).
    The multirun as its own process: test_distributed.py (launchers), test_search.py."""
    shrink = [f"train.mnist_cnn.trainer.{k}={v}" for k, v in
              {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1,
               "limit_test_batches": 1}.items()]
    code = run_script("train", "-m", "run=mnist_cnn", "train.mnist_cnn.model.conv.0.channels=4,8",
                      "train.mnist_cnn.register_model=false", f"paths.prepared={tiny_mnist.parent}",
                      f"hydra.sweep.dir={tmp_path}/sweep", "hydra/job_logging=none",
                      "hydra/hydra_logging=none", *shrink)
    assert code == 0, capsys.readouterr().err[-2000:]
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
        assert (tmp_path / "sweep" / job / "metrics" / "mnist" / "mnist_cnn.json").is_file()
