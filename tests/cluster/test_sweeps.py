"""Sweeps and searches through the scheduler: `hydra/launcher=slurm` submits real jobs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from cnnlab.search.storage import default_storage
from tests.cluster.slurm import LAUNCHER, scontrol_job
from tests.conftest import ROOT
from tests.integration.test_distributed import train_cmd
from tests.integration.test_search import KERNEL, LR, ctrl_c_while_trial_runs, search_cmd, trial_runs

pytestmark = pytest.mark.filterwarnings("ignore:.*Distribution has been deprecated:FutureWarning")


def test_a_sweep_is_one_job_per_point_and_a_failed_job_is_named(tmp_path, tiny_mnist,
                                                                 on_cluster):
    cmd = train_cmd(tmp_path, tiny_mnist, *LAUNCHER, "train.mnist_cnn.seed=bad,1,2",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}")
    result = subprocess.run([*cmd[:2], "-m", *cmd[2:]], cwd=tmp_path, env=on_cluster,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    (failed, summary) = errors  # the other jobs went on: one line for the failure, one in all
    assert summary == "error: 1 of 3 SLURM jobs failed (above)"
    assert failed.startswith("error: job #0 (") and "train.mnist_cnn.seed=bad), SLURM job " in failed
    why, log = failed.split(": ", 2)[2].rsplit("; its SLURM log: ", 1)
    assert why == "train.mnist_cnn.seed: Value 'bad' of type 'str' could not be converted to Integer"
    assert f"error: {why}" in Path(log).read_text()  # the job's own log says it

    client = MlflowClient(on_cluster["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("cnnlab.role") == "sweep"]
    jobs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.params["seed"] for r in jobs) == ["1", "2"]
    assert {r.info.status for r in jobs} == {"FINISHED"}
    for run in jobs:  # what the scheduler saw is what conf/hydra/launcher/slurm.yaml said
        shown = scontrol_job(run.data.tags["cnnlab.slurm.array_task"], on_cluster)
        assert shown["JobId"] == run.data.tags["cnnlab.slurm.job_id"]
        assert (shown["JobState"], shown["Partition"], shown["TimeLimit"], shown["NumCPUs"],
                shown["MinMemoryNode"]) == ("COMPLETED", "debug", "00:07:00", "1", "1G")
        assert "gres/gpu" not in shown.get("TRES", "")
        assert Path(shown["StdErr"]).is_relative_to(tmp_path / "sweep" / ".submitit")


def test_a_study_runs_two_trials_at_a_time_and_resumes_after_ctrl_c(tmp_path, tiny_mnist,
                                                                    on_cluster):
    study = optuna.create_study(study_name="tiny", storage=default_storage(), direction="maximize")
    for lr in (0.003, 0.002, 0.004, 0.005):  # fixed trials: 2 is interrupted, 3 replaces it
        study.enqueue_trial({KERNEL: 3, LR: lr})
    cmd = [*search_cmd(tmp_path, tiny_mnist, 3), *LAUNCHER, "hydra.sweeper.n_jobs=2"]
    client = MlflowClient(on_cluster["MLFLOW_TRACKING_URI"])
    code, err = ctrl_c_while_trial_runs(cmd, "2", client, env=on_cluster)  # after trials 0, 1
    assert code != 0, err[-3000:]

    resumed = subprocess.run(cmd, cwd=ROOT, env=on_cluster, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Study tiny: 2 of 3 trials done, 1 to run" in resumed.stdout + resumed.stderr
    study = optuna.load_study(study_name="tiny", storage=default_storage())
    assert [(t.state, bool(t.user_attrs.get("cnnlab.interrupted"))) for t in study.trials] == [
        (TrialState.COMPLETE, False), (TrialState.COMPLETE, False), (TrialState.FAIL, True),
        (TrialState.COMPLETE, False)]
    _, by_trial = trial_runs(client, sweep="search")
    assert {n: r.info.status for n, r in by_trial.items()} == {
        "0": "FINISHED", "1": "FINISHED", "2": "KILLED", "3": "FINISHED"}
    jobs = {n: r.data.tags.get("cnnlab.slurm.array_task", r.data.tags["cnnlab.slurm.job_id"])
            for n, r in by_trial.items()}  # a batch of one trial is a plain job, not an array
    assert jobs["0"].split("_")[0] == jobs["1"].split("_")[0] != jobs["2"]  # 0, 1: side by side
    stopped = scontrol_job(jobs["2"], on_cluster)
    assert stopped["JobState"] == "CANCELLED"  # Ctrl-C cancelled its job on the cluster

