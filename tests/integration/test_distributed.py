"""Several processes: DDP training on the CPU (gloo), sharded batches, device checks, and
parallel jobs on a fresh tracking store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning
import pytest
import torch
from mlflow.tracking import MlflowClient

from cnnlab.core.errors import ConfigError
from cnnlab.training.batches import TensorBatches
from cnnlab.training.checkpoint import load_checkpoint
from tests.conftest import ROOT, TINY_TRAINER
from tests.stages import run_script, run_stage


def train_cmd(tmp_path: Path, data: Path, *overrides: str) -> list[str]:
    shrink = [f"train.mnist_cnn.trainer.{k}={v}" for k, v in TINY_TRAINER.items()]
    return [sys.executable, str(ROOT / "pipelines" / "train.py"), "run=mnist_cnn",
            f"paths.prepared={data.parent}", "train.mnist_cnn.register_model=false",
            "train.mnist_cnn.trainer.threads=1", "train.mnist_cnn.trainer.accelerator=cpu",
            *(f"paths.{k}={tmp_path / k}" for k in ("models", "metrics", "plots")),
            *shrink, *overrides]


def test_two_process_ddp_training_counts_every_test_digit_once(tmp_path, tiny_mnist,
                                                               isolated_mlflow):
    result = subprocess.run(
        train_cmd(tmp_path, tiny_mnist, "train.mnist_cnn.trainer.devices=2",
                  "train.mnist_cnn.trainer.strategy=ddp", "train.mnist_cnn.trainer.max_epochs=2",
                  "train.mnist_cnn.trainer.limit_test_batches=1.0",
                  "train.mnist_cnn.trainer.eval_batch_size=64"),
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics/mnist/mnist_cnn.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["test_samples"] == 500  # 250 per rank, none twice, none left out
    model, meta = load_checkpoint(tmp_path / "models/mnist_cnn/model.ckpt")
    assert meta["experiment"] == "mnist_cnn" and model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["test_samples"] == 500
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2]
    assert not list(tmp_path.rglob(".*.tmp"))  # the second rank left no staged output behind


def test_ddp_inside_a_multirun_is_refused_in_one_line(tmp_path, tiny_mnist, monkeypatch, capsys):
    """The multirun in this process (Hydra's basic launcher runs its jobs in the process that
    starts them); Hydra's logging left alone, as it would outlive the test here. Refused before
    any work: a job that got as far as a Trainer would launch DDP from inside pytest."""

    def no_trainer(*args, **kwargs):
        raise AssertionError("a job of the multirun built a DDP Trainer")

    monkeypatch.setattr(lightning, "Trainer", no_trainer)
    cmd = train_cmd(tmp_path, tiny_mnist, "train.mnist_cnn.trainer.devices=2",
                    "train.mnist_cnn.trainer.strategy=ddp", "train.mnist_cnn.seed=1,2",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra/job_logging=none",
                    "hydra/hydra_logging=none")
    monkeypatch.chdir(tmp_path)
    code = run_script("train", "-m", *cmd[2:])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: trainer.strategy='ddp', trainer.devices=2: DDP restarts the script" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("override,key", [
    ("trainer.accelerator=gpu", "trainer.accelerator"),
    ("trainer.strategy=warp_drive", "trainer.strategy"),
    ("trainer.precision=16-mixed", "trainer.precision"),
    ("trainer.devices=0", "trainer.devices"),
    ("trainer.num_nodes=0", "trainer.num_nodes"),
])
def test_devices_that_cannot_run_here_are_named(tmp_path, tiny_mnist, override, key):
    if torch.cuda.is_available():
        pytest.skip("these settings are valid on a machine with CUDA")
    cpu = [] if "accelerator" in override else ["train.mnist_cnn.trainer.accelerator=cpu"]
    with pytest.raises(ConfigError, match=f"^{key}="):
        run_stage("train", "run=mnist_cnn", f"paths.prepared={tiny_mnist.parent}",
                  f"paths.models={tmp_path}", *cpu, f"train.mnist_cnn.{override}")
    assert not (tmp_path / "mnist_cnn").exists()


def shards(batches_of_ranks: list[TensorBatches]) -> list[list[int]]:
    return [[int(v) for _, y in batches for v in y] for batches in batches_of_ranks]


@pytest.mark.parametrize("n,world", [(10, 2), (11, 2), (11, 3), (5, 4)])
def test_shards_cover_an_epoch_as_distributed_sampler_does(n, world):
    y = torch.arange(n)
    train = [TensorBatches(y[:, None], y, 3, shuffle=True, seed=7) for _ in range(world)]
    evaluate = [TensorBatches(y[:, None], y, 3, shuffle=False) for _ in range(world)]
    for rank in range(world):
        train[rank].place(torch.device("cpu"), rank, world)
        evaluate[rank].place(torch.device("cpu"), rank, world)
    per_rank = -(-n // world)
    seen = shards(train)
    assert all(len(s) == per_rank for s in seen)  # the same number of steps on every rank
    assert sorted(set(sum(seen, []))) == list(range(n))  # every sample in the epoch
    assert len(sum(seen, [])) == per_rank * world  # padded by repeats, as DistributedSampler
    assert [len(b) for b in train] == [(per_rank + 2) // 3] * world
    assert sorted(sum(shards(evaluate), [])) == list(range(n))  # evaluation: each exactly once


def test_one_process_keeps_the_single_machine_order():
    y = torch.arange(20)
    alone = TensorBatches(y[:, None], y, 6, shuffle=True, seed=3)
    expected = torch.randperm(20, generator=torch.Generator().manual_seed(3)).tolist()
    assert shards([alone]) == [expected]


def test_four_processes_on_a_fresh_store_lose_no_run(tmp_path, tiny_mnist):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'fresh.db'}"}
    procs = [subprocess.Popen(train_cmd(tmp_path / f"job{i}", tiny_mnist,
                                        "train.mnist_cnn.trainer.max_epochs=2",
                                        f"train.mnist_cnn.seed={i}"),
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    outcomes = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-2000:] for _, err in outcomes]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 4
    for run in runs:
        for metric in ("train_loss", "val_acc", "seconds"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2]
        assert "test_acc" in run.data.metrics


@pytest.mark.parametrize("launcher", ["parallel", "submitit_local"])
def test_sweeps_on_hydra_launchers_log_every_job_under_one_parent(tmp_path, tiny_mnist,
                                                                  isolated_mlflow, launcher):
    cmd = train_cmd(tmp_path, tiny_mnist, f"hydra/launcher={launcher}",
                    "train.mnist_cnn.seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    cmd.remove("train.mnist_cnn.trainer.threads=1")  # the launcher's share of the cores decides
    result = subprocess.run([*cmd[:2], "-m", *cmd[2:]], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("cnnlab.role") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["seed"] for r in jobs) == ["1", "2"]
    assert {r.info.status for r in jobs} == {"FINISHED"}
    if launcher == "parallel":  # two jobs side by side split the cores
        share = max(1, (os.cpu_count() or 1) // 2)
        assert {r.data.tags["cnnlab.env.torch_threads"] for r in jobs} == {str(share)}
    for job in ("0", "1"):
        assert (tmp_path / "sweep" / job / "metrics" / "mnist" / "mnist_cnn.json").is_file()
