"""Batch jobs on the cluster: one DDP training across both nodes, and a job that SLURM warns
(SIGUSR1) or kills, which resumes to the identical result in the same MLflow run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import torch
from mlflow.tracking import MlflowClient

from cnnlab.training.checkpoint import load_checkpoint
from tests.cluster.slurm import scontrol_job
from tests.conftest import ROOT, TINY_TRAINER
from tests.integration.test_interruptions import SLOW, weights

SCRIPT = ROOT / "conf" / "slurm" / "train.sbatch"
T = "train.mnist_cnn.trainer"


def overrides(out: Path, data: Path, *more: str) -> list[str]:
    return [f"paths.prepared={data.parent}", "train.mnist_cnn.register_model=false",
            f"{T}.threads=1", f"{T}.accelerator=cpu",
            *(f"paths.{k}={out / k}" for k in ("models", "metrics", "plots")), *more]


def sbatch(env: dict[str, str], log: Path, *args: str) -> str:
    """Submit from the repository root, as the job script says; returns the job id."""
    done = subprocess.run(["sbatch", "--parsable", f"--output={log}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def wait_for(job: str, env: dict[str, str], states: tuple[str, ...]) -> str:
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        state = scontrol_job(job, env)["JobState"]
        if state in states:
            return state
        time.sleep(0.5)
    raise AssertionError(f"job {job} never reached {states}")


def story(job: str, env: dict[str, str], log: Path) -> str:
    """An assertion's message: what the scheduler holds for the job, what slurmctld logged
    about it, and the end of its own log (a job may fail before writing one)."""
    held = scontrol_job(job, env)
    record = " ".join(f"{k}={held.get(k)}" for k in ("JobState", "Reason", "ExitCode", "Restarts",
                                                      "NodeList"))
    ctld = Path(env["SLURM_CONF"]).parent.parent / "logs" / "slurmctld.log"
    said = [line for line in ctld.read_text().splitlines() if line.startswith("[")
            and re.search(rf"JobId={job}\b", line)] if ctld.is_file() else []
    own = log.read_text()[-3000:] if log.is_file() else f"(no log at {log})"
    return "\n".join([record, *said[-12:], own])


def wait_for_epoch_1(state: Path, job: str, env: dict[str, str], log: Path) -> None:
    """Until the job has saved its state after epoch 1; a job that ended first fails at once."""
    deadline = time.monotonic() + 300
    while not list(state.glob("resume/*/meta.json")):
        ended = scontrol_job(job, env)["JobState"] not in ("PENDING", "CONFIGURING", "RUNNING")
        assert time.monotonic() < deadline and not ended, story(job, env, log)
        time.sleep(0.2)


def test_one_ddp_training_across_two_nodes(tmp_path, tiny_mnist, on_cluster):
    """`srun --nodes=2 --ntasks-per-node=1` through the shipped job script: Lightning's SLURM
    environment gives the ranks, gloo crosses the bridge from node2 to node1."""
    shrink = [f"{T}.{k}={v}" for k, v in TINY_TRAINER.items()]
    job = sbatch(on_cluster, tmp_path / "ddp.log", str(SCRIPT),
                 *overrides(tmp_path / "out", tiny_mnist, *shrink, f"{T}.limit_test_batches=1.0",
                            f"{T}.eval_batch_size=64"))
    assert wait_for(job, on_cluster, ("COMPLETED", "FAILED", "CANCELLED")) == "COMPLETED", (
        story(job, on_cluster, tmp_path / "ddp.log"))
    shown = scontrol_job(job, on_cluster)
    assert (shown["NumNodes"], shown["NodeList"]) == ("2", "node[1-2]")
    log = (tmp_path / "ddp.log").read_text()
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    metrics = json.loads((tmp_path / "out/metrics/mnist/mnist_cnn.json").read_text())
    assert (metrics["world_size"], metrics["test_samples"]) == (2, 500)  # each sample once
    model, meta = load_checkpoint(tmp_path / "out/models/mnist_cnn/model.ckpt")
    assert meta["experiment"] == "mnist_cnn" and model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    written = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")
                     if p.is_file())
    assert written == ["metrics/mnist/mnist_cnn.json", "models/mnist_cnn/model.ckpt",
                       "plots/mnist/mnist_cnn.csv"]  # rank 0's; rank 1 staged nothing
    client = MlflowClient(on_cluster["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id],
                              f"tags.`cnnlab.slurm.job_id` = '{job}'")
    (run,) = runs  # one run for both ranks
    assert run.info.status == "FINISHED" and run.data.metrics["test_samples"] == 500
    assert run.data.tags["cnnlab.slurm.nodes"] == "node[1-2]"


def test_a_warned_job_requeues_and_resumes_to_the_identical_weights(tmp_path, tiny_mnist,
                                                                   on_cluster):
    """SIGUSR1 (as `--signal=USR1@<s>` sends it before the time limit) while epoch 2 of 3
    trains: the state is saved at its end, the job requeues, the same run finishes."""
    env = {**on_cluster, "CNNLAB_STATE_DIR": str(tmp_path / "state")}
    args = ["--nodes=1", str(SCRIPT)]
    whole = sbatch({**on_cluster, "CNNLAB_STATE_DIR": str(tmp_path / "state0")},
                   tmp_path / "whole.log", *args, *overrides(tmp_path / "whole", tiny_mnist, *SLOW))
    job = sbatch(env, tmp_path / "warned.log", *args,
                 *overrides(tmp_path / "warned", tiny_mnist, *SLOW))
    wait_for_epoch_1(tmp_path / "state", job, env, tmp_path / "warned.log")
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True)
    assert wait_for(job, env, ("PENDING", "COMPLETED", "FAILED")) == "PENDING", (  # requeued
        story(job, env, tmp_path / "warned.log"))
    # Slurm holds a requeued job for the credential lifetime (cred_expire_s in conf/cluster.yaml)
    # and then starts it again; released sooner, it can fail with "Job credential revoked"
    for done, log in ((job, "warned.log"), (whole, "whole.log")):
        assert wait_for(done, env, ("COMPLETED", "FAILED", "CANCELLED")) == "COMPLETED", (
            story(done, env, tmp_path / log))
    log = (tmp_path / "warned.log").read_text()
    assert "stopped by signal 10: outputs untouched, run marked KILLED" in log
    assert "train mnist_cnn: resuming after epoch 2 of 3" in log
    assert scontrol_job(job, env)["Restarts"] == "1"
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "warned")
    assert all(torch.equal(a[k], b[k]) for k in a)
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id],
                                f"tags.`cnnlab.slurm.job_id` = '{job}'")
    assert run.info.status == "FINISHED" and run.data.tags["cnnlab.slurm.restarts"] == "1"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2, 3]
    assert not list((tmp_path / "state").glob("resume/*"))  # removed after success


def test_a_job_killed_outright_leaves_a_run_the_next_start_marks_killed(tmp_path, tiny_mnist,
                                                                       on_cluster):
    """SIGKILL to the training process (as the OOM killer or a lost node does; `scancel`
    itself sends SIGTERM first, and the run then ends KILLED at once). The next start, on
    another node, asks SLURM whether the dead run's job still runs."""
    env = {**on_cluster, "CNNLAB_STATE_DIR": str(tmp_path / "state")}
    args = ["--nodes=1", str(SCRIPT)]
    job = sbatch(env, tmp_path / "killed.log", *args,
                 *overrides(tmp_path / "out", tiny_mnist, *SLOW))
    wait_for_epoch_1(tmp_path / "state", job, env, tmp_path / "killed.log")
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("mnist_cnn").experiment_id
    (dead,) = client.search_runs([experiment], f"tags.`cnnlab.slurm.job_id` = '{job}'")
    os.kill(int(dead.data.tags["cnnlab.pid"]), signal.SIGKILL)  # nodes share the process table
    assert wait_for(job, env, ("CANCELLED", "FAILED", "COMPLETED")) == "FAILED"
    (dead,) = client.search_runs([experiment], f"tags.`cnnlab.slurm.job_id` = '{job}'")
    assert dead.info.status == "RUNNING"  # nothing ran to end it
    # The nodes here share one host name; on a real cluster the next start may land on another
    # node, which cannot ask the dead process, only SLURM about its job
    client.set_tag(dead.info.run_id, "cnnlab.host", "another-node")
    again = sbatch(env, tmp_path / "again.log", *args, *overrides(
        tmp_path / "out", tiny_mnist, *SLOW, f"{T}.lr=0.002"))  # another config: no resume
    assert wait_for(again, env, ("COMPLETED", "FAILED", "CANCELLED")) == "COMPLETED", (
        story(again, env, tmp_path / "again.log"))
    (dead,) = client.search_runs([experiment], f"tags.`cnnlab.slurm.job_id` = '{job}'")
    assert dead.info.status == "KILLED" and dead.data.tags["cnnlab.ended"] == (
        f"SLURM job {job} ended")
