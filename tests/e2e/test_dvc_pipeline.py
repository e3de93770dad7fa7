"""`dvc repro`, a second no-op repro, `dvc exp run -S`, `dvc exp show`, `dvc plots show`,
on a shrunk copy of this repository."""

import json
import time

import pytest
import yaml

from tests.e2e.conftest import copy_repo, exp_show

pytestmark = pytest.mark.e2e
MNIST_STAGES = ["prepare_mnist", "train@mnist_dnn", "train@mnist_cnn", "train@mnist_separable",
                "params_report"]


MNIST_TINY = {  # tiny data and trainer in the copy's conf/, so `dvc exp run` composes them too
    "data/mnist.yaml": {"max_train": 600, "max_test": 300, "val_size": 300},
    "trainer/mnist.yaml": {"max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 1,
                           "limit_test_batches": 1},
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, mlflow_template):
    return copy_repo(tmp_path_factory.mktemp("e2e") / "repo", mlflow_template, MNIST_TINY)


def exp_show_test_acc(table: list, metrics_file: str) -> dict[str, float]:
    """{name or rev: test_acc} of every commit and experiment in `dvc exp show --json`."""
    return {name: row["metrics"][metrics_file]["test_acc"] for name, row in exp_show(table).items()
            if metrics_file in row["metrics"]}


def test_repro_twice_then_an_experiment_that_exp_show_compares(repo):
    dest, run = repo
    first = run("dvc", "repro", "params_report")
    for stage in MNIST_STAGES:
        assert f"Running stage '{stage}'" in first.stdout, stage
    metrics = json.loads((dest / "metrics" / "mnist" / "mnist_cnn.json").read_text())
    assert metrics["params"] == 137_660
    claims = json.loads((dest / "reports" / "params_report" / "claims.json").read_text())
    assert any(c["claim"].startswith("A convolution is a dense layer") and c["holds"] for c in claims)
    run("git", "add", "-A")  # metrics/ and plots/ are committed, as DVC's example project does
    run("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline")

    second = run("dvc", "repro", "params_report")
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout

    shown = json.loads(run("dvc", "plots", "show", "--json").stdout)["data"]
    assert "plots/mnist/mnist_cnn.csv" in shown
    (combined,) = shown["plots/params_report.csv"]  # one chart for the domain's experiments
    points = combined["content"]["data"]["values"]
    assert {p["experiment"] for p in points} == {"mnist_dnn", "mnist_cnn", "mnist_separable"}

    exp = run("dvc", "exp", "run", "params_report", "-n", "narrow",
              "-S", "train.mnist_cnn.model.conv.0.channels=8")
    assert "Running stage 'train@mnist_cnn'" in exp.stdout
    assert "Running stage 'train@mnist_dnn'" not in exp.stdout  # only the changed model re-ran
    assert (yaml.safe_load((dest / "params.yaml").read_text())
            ["train"]["mnist_cnn"]["model"]["conv"][0]["channels"]) == 8
    assert json.loads((dest / "metrics" / "mnist" / "mnist_cnn.json").read_text())["params"] == (
        8 * 9 + 8 + 50 * 8 * 9 + 50 + 1250 * 100 + 100 + 1010)

    table = json.loads(run("dvc", "exp", "show", "--json").stdout)
    accs = exp_show_test_acc(table, "metrics/mnist/mnist_cnn.json")
    assert isinstance(accs.get("main"), float) and isinstance(accs.get("narrow"), float), accs
    assert accs["narrow"] != accs["main"]  # 8 filters instead of 25: a different model
    dnn = exp_show_test_acc(table, "metrics/mnist/mnist_dnn.json")
    assert dnn["narrow"] == dnn["main"]  # unchanged: the experiment reused its output

    diff = json.loads(run("dvc", "plots", "diff", "main", "narrow", "--json").stdout)
    assert "plots/mnist/mnist_cnn.csv" in json.dumps(diff)


def test_the_dvc_queue_runs_two_experiments_side_by_side(repo):
    """`dvc exp run --queue` twice, then `dvc queue start -j 2`, as the README says (each
    experiment runs the training it changes, not the stages after it: two processes less)."""
    dest, run = repo
    for seed in (1, 2):
        run("dvc", "exp", "run", "--queue", "train@mnist_cnn", "-n", f"seed{seed}",
            "-S", f"train.mnist_cnn.seed={seed}", "-S", "train.mnist_cnn.trainer.threads=1")
    run("dvc", "queue", "start", "-j", "2")

    def finished() -> int:  # experiments done: their git refs, far cheaper to poll than dvc
        refs = run("git", "for-each-ref", "--format=%(refname)", "refs/exps").stdout.split()
        return sum(ref.rsplit("/", 1)[-1] in ("seed1", "seed2") for ref in refs)

    deadline, asked = time.monotonic() + 600, 0.0
    while time.monotonic() < deadline:  # the queue's own word once both are done, or every 30 s
        if finished() == 2 or time.monotonic() - asked > 30:
            status, asked = run("dvc", "queue", "status").stdout, time.monotonic()
            if "Queued" not in status and "Running" not in status:
                break
        time.sleep(2)
    assert status.count("Success") >= 2, status
    table = json.loads(run("dvc", "exp", "show", "--json").stdout)
    accs = exp_show_test_acc(table, "metrics/mnist/mnist_cnn.json")
    assert isinstance(accs.get("seed1"), float) and isinstance(accs.get("seed2"), float), accs
    assert accs["seed1"] != accs["seed2"]
