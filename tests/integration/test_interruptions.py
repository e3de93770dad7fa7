"""Kills, signals and tracking outages: a training resumes to the identical result, no run
is left RUNNING, and an outage costs neither the training nor its metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from tests.servers import TrackingServer, free_port
from tests.stages import run_script, run_stage

SLOW = ["train.mnist_cnn.trainer.max_epochs=3", "train.mnist_cnn.trainer.batch_size=32",
        "train.mnist_cnn.model.dropout=0.3"]  # dropout: the random state must resume too


def command(tmp_path: Path, out: str, data: Path, *overrides: str) -> list[str]:
    return [sys.executable, str(ROOT / "pipelines" / "train.py"), "run=mnist_cnn",
            f"paths.prepared={data.parent}", "train.mnist_cnn.register_model=false",
            "train.mnist_cnn.trainer.accelerator=cpu", "train.mnist_cnn.trainer.threads=1",
            *(f"paths.{k}={tmp_path / out / k}" for k in ("models", "metrics", "plots")),
            *SLOW, *overrides]


def start_and_wait_for_epoch(cmd: list[str], state: Path, **kwargs) -> subprocess.Popen:
    """Start a training and return once its first epoch's resume state is on disk."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)
    deadline = time.monotonic() + 300
    while not list(state.glob("resume/*/meta.json")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, **kwargs)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "models/mnist_cnn/model.ckpt", weights_only=True)["state_dict"]


def runs_of(client: MlflowClient, experiment: str = "mnist_cnn"):
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def in_process(cmd: list[str]) -> None:
    """The training of `cmd` in this process (the stage contract, as the script runs it)."""
    run_stage("train", *cmd[2:])


def test_a_killed_training_resumes_to_the_identical_result(tmp_path, tiny_mnist, capsys):
    state = Path(os.environ["CNNLAB_STATE_DIR"])
    in_process(command(tmp_path, "whole", tiny_mnist))
    killed = start_and_wait_for_epoch(command(tmp_path, "killed", tiny_mnist), state)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    capsys.readouterr()
    in_process(command(tmp_path, "killed", tiny_mnist))  # the rerun: it resumes
    assert "resuming after epoch 1 of 3" in capsys.readouterr().out  # one line says so
    whole, resumed = weights(tmp_path / "whole"), weights(tmp_path / "killed")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    metrics = [json.loads((tmp_path / d / "metrics/mnist/mnist_cnn.json").read_text())
               for d in ("whole", "killed")]
    assert [{k: m[k] for k in ("test_acc", "test_loss", "final_val_acc", "epochs")}
            for m in metrics] == [{k: metrics[0][k] for k in
                                   ("test_acc", "test_loss", "final_val_acc", "epochs")}] * 2
    assert not list(state.glob("resume/*"))  # removed after success
    client = MlflowClient()
    statuses = sorted(r.info.status for r in runs_of(client))
    assert statuses == ["FINISHED", "FINISHED"]  # the killed run was continued, not orphaned
    for r in runs_of(client):
        assert [m.step for m in client.get_metric_history(r.info.run_id, "val_acc")] == [1, 2, 3]


def test_a_changed_config_starts_afresh_and_reaps_the_dead_run(tmp_path, tiny_mnist, capsys):
    state = Path(os.environ["CNNLAB_STATE_DIR"])
    killed = start_and_wait_for_epoch(command(tmp_path, "a", tiny_mnist), state)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    capsys.readouterr()
    in_process(command(tmp_path, "a", tiny_mnist, "train.mnist_cnn.trainer.lr=0.002"))
    assert "resuming" not in capsys.readouterr().out
    client = MlflowClient()
    assert sorted(r.info.status for r in runs_of(client)) == ["FINISHED", "KILLED"]
    (dead,) = [r for r in runs_of(client) if r.info.status == "KILLED"]
    assert dead.data.tags["cnnlab.ended"] == "process died"


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_cleanly_and_marks_the_run_killed(tmp_path, tiny_mnist, sig, code):
    state = Path(os.environ["CNNLAB_STATE_DIR"])
    earlier = tmp_path / "out/metrics/mnist/mnist_cnn.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"test_acc": 0.5}\n')
    proc = start_and_wait_for_epoch(command(tmp_path, "out", tiny_mnist), state)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    assert err.strip().splitlines()[-1] == (
        f"stopped by signal {int(sig)}: outputs untouched, run marked KILLED")
    assert earlier.read_text() == '{"test_acc": 0.5}\n'
    assert list(state.glob("resume/*/last.ckpt"))  # kept for the next attempt
    assert [r.info.status for r in runs_of(MlflowClient())] == ["KILLED"]


@pytest.fixture
def server(tmp_path, mlflow_template):
    srv = TrackingServer(tmp_path, mlflow_template)
    srv.start()
    yield srv
    srv.stop()


def test_an_unreachable_server_fails_the_stage_in_one_line(tmp_path, tiny_mnist, monkeypatch,
                                                           capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert run_script("train", *command(tmp_path, "out", tiny_mnist)[2:]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: tracking server {uri} is unreachable (ConnectionError); it comes from "
        "MLFLOW_TRACKING_URI: start the server, or unset MLFLOW_TRACKING_URI to log to the "
        "project's mlflow.db"]
    assert not (tmp_path / "out").exists()


def test_an_outage_mid_run_costs_nothing_once_replayed(tmp_path, tiny_mnist, server):
    state = Path(os.environ["CNNLAB_STATE_DIR"])
    env = {**os.environ, "MLFLOW_TRACKING_URI": server.uri}
    proc = start_and_wait_for_epoch(command(tmp_path, "out", tiny_mnist,
                                            "tracking.system_metrics_interval=0.2"), state, env=env)
    server.stop()  # the server goes down after the first epoch
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "is not answering; keeping what cannot be sent" in err
    assert "Traceback" not in err  # the system metrics sampler stopped quietly
    assert (tmp_path / "out/metrics/mnist/mnist_cnn.json").is_file()  # the DVC outputs
    kept = [json.loads(line) for f in (state / "outbox").glob("*/entries.jsonl")
            for line in f.read_text().splitlines()]
    assert kept and not [k for e in kept for k in e.get("metrics", {}) if k.startswith("system/")]
    server.start()
    replayed = run([sys.executable, "-m", "cnnlab.core.tracking", "replay"], env=env)
    assert replayed.returncode == 0, replayed.stderr
    client = MlflowClient(server.uri)
    (finished,) = runs_of(client)
    assert finished.info.status == "FINISHED"
    for metric in ("train_loss", "val_acc", "seconds"):
        assert [m.step for m in client.get_metric_history(finished.info.run_id, metric)] == [
            1, 2, 3]
    assert "test_acc" in finished.data.metrics
    assert "system/cpu_utilization_percentage" in finished.data.metrics  # sent before the outage
    assert {a.path for a in client.list_artifacts(finished.info.run_id, "mnist")} == {
        "mnist/mnist_cnn.csv", "mnist/mnist_cnn.json"}
    assert not list((state / "outbox").glob("*"))
