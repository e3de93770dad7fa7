"""Search: Hydra's Optuna sweeper as one study (cnnlab.search), run as a user runs it."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time

import optuna
import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from cnnlab.search.cli import add_arguments, run
from cnnlab.search.storage import default_storage
from tests.conftest import ROOT, compose_config

pytestmark = pytest.mark.filterwarnings("ignore:.*Distribution has been deprecated:FutureWarning")
KERNEL, LR = "train.mnist_cnn.model.conv.0.kernel", "train.mnist_cnn.trainer.lr"


def search_cmd(tmp_path, tiny_mnist, n_trials: int) -> list[str]:
    """A tiny search: 3 x 3 / 5 x 5 / impossible 40 x 40 first kernels, and the learning rate."""
    shrink = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1,
              "limit_test_batches": 1, "threads": 1}
    return [sys.executable, "pipelines/train.py", "-m", "hydra/sweeper=study", "run=mnist_cnn",
            "hydra.sweeper.study_name=tiny", f"hydra.sweeper.n_trials={n_trials}",
            f"hydra.sweep.dir={tmp_path / 'search'}", f"paths.prepared={tiny_mnist.parent}",
            "train.mnist_cnn.register_model=false", f"{KERNEL}=choice(3,5,40)",
            f"{LR}=tag(log,interval(0.001,0.01))",
            *(f"train.mnist_cnn.trainer.{k}={v}" for k, v in shrink.items())]


def trial_runs(client: MlflowClient, sweep: str = "") -> tuple[object, dict[str, object]]:
    """The study's parent run, and its child runs by trial (job) number; `sweep`: only the
    runs of that sweep folder's name (a store that holds other sweeps)."""
    runs = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id],
                              f"tags.`cnnlab.sweep` = '{sweep}'" if sweep else "")
    (parent,) = [r for r in runs if r.data.tags.get("cnnlab.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    by_trial = {r.data.tags["cnnlab.job"]: r for r in children}
    assert len(by_trial) == len(children), "two runs of one trial"
    assert len(children) == len(runs) - 1, "a run outside the study's parent"
    return parent, by_trial


def heed_ctrl_c() -> None:
    """SIGINT back to its default in the child: a shell starts background jobs (a test run
    with `&`) with SIGINT ignored, which Python would inherit and never raise."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ctrl_c_while_trial_runs(cmd: list[str], trial: str, client: MlflowClient,
                            **popen: object) -> tuple[int, str]:
    """Start the search `cmd` and press Ctrl-C once trial `trial`'s run is RUNNING; returns
    the search's exit code and its stderr."""
    sweep = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, preexec_fn=heed_ctrl_c, **popen)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:
        time.sleep(0.2)
        exp = client.get_experiment_by_name("mnist_cnn")
        if exp and client.search_runs([exp.experiment_id], f"tags.`cnnlab.job` = '{trial}' and "
                                      "attributes.status = 'RUNNING'"):
            break
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=120)
    return sweep.returncode, err


def test_a_study_logs_each_trial_under_a_parent_holding_the_best(tmp_path, tiny_mnist,
                                                                  isolated_mlflow):
    study = optuna.create_study(study_name="tiny", storage=default_storage(), direction="maximize")
    for kernel in (3, 40, 5):  # the trials' order is fixed; the 40 x 40 one cannot fit 28 x 28
        study.enqueue_trial({KERNEL: kernel, LR: 0.003})
    result = subprocess.run(search_cmd(tmp_path, tiny_mnist, 3), cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "error: model.conv[0]: input 28x28 with window (40, 40)" in result.stderr

    study = optuna.load_study(study_name="tiny", storage=default_storage())
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                               TrialState.COMPLETE]
    parent, by_trial = trial_runs(MlflowClient())
    assert {n: r.info.status for n, r in by_trial.items()} == {
        "0": "FINISHED", "1": "FAILED", "2": "FINISHED"}
    for trial in study.trials[::2]:  # the objective is the run's validation accuracy
        assert by_trial[str(trial.number)].data.metrics["final_val_acc"] == trial.value
    assert parent.data.metrics["best_final_val_acc"] == study.best_value
    assert {k: v for k, v in parent.data.params.items() if k.startswith("best.")} == {
        f"best.{k}": str(v) for k, v in study.best_params.items()}
    assert parent.data.metrics["trials_fail"] == 1

    conf = tmp_path / "conf"  # the winner as an experiment file, in a copy of conf/
    shutil.copytree(ROOT / "conf", conf)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["tiny", "--conf", str(conf), "--add-default"])) == 0
    assert "  - experiment@train.tiny_best: tiny_best\n" in (conf / "config.yaml").read_text()
    base = compose_config()["train"]["mnist_cnn"]
    with initialize_config_dir(str(conf), version_base="1.3"):
        winner = OmegaConf.to_container(compose("config").train.tiny_best, resolve=True)
    assert winner["model"]["conv"][0]["kernel"] == study.best_params[KERNEL]
    assert winner["trainer"]["lr"] == study.best_params[LR]
    assert winner["trainer"]["max_epochs"] == base["trainer"]["max_epochs"]  # not the search's 1
    assert winner["model"]["conv"][1] == base["model"]["conv"][1]


def test_an_interrupted_study_resumes_without_rerunning_a_trial(tmp_path, tiny_mnist,
                                                                isolated_mlflow):
    study = optuna.create_study(study_name="tiny", storage=default_storage(), direction="maximize")
    for lr in (0.003, 0.002, 0.004):  # fixed trials: trial 1 is interrupted, 2 replaces it
        study.enqueue_trial({KERNEL: 3, LR: lr})
    cmd = search_cmd(tmp_path, tiny_mnist, 2)
    client = MlflowClient()
    code, err = ctrl_c_while_trial_runs(cmd, "1", client)  # after trial 0 finished
    assert code == 130, err[-3000:]

    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Study tiny: 1 of 2 trials done, 1 to run" in resumed.stdout
    study = optuna.load_study(study_name="tiny", storage=default_storage())
    assert [(t.state, bool(t.user_attrs.get("cnnlab.interrupted"))) for t in study.trials] == [
        (TrialState.COMPLETE, False), (TrialState.FAIL, True), (TrialState.COMPLETE, False)]
    parent, by_trial = trial_runs(client)  # one parent for both processes, one run per trial
    assert {n: r.info.status for n, r in by_trial.items()} == {
        "0": "FINISHED", "1": "KILLED", "2": "FINISHED"}
    assert parent.data.metrics["trials_complete"] == 2
