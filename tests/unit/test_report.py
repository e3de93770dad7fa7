"""The final report: collects claims and metrics, embeds figures, names a corrupt claims file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import torch

from cnnlab.analysis.report import Environments, Training, build_report, read_checked_claims
from cnnlab.core import environment
from cnnlab.core.errors import DataError
from tests.stages import run_script, run_stage

TOPICS = {"params": "MNIST parameters", "audio": "Speech", "style": "Style transfer"}


def report(project: dict[str, Path], topics: dict[str, str] = TOPICS) -> dict:
    """build_report on the project's reports and its one training, written in place."""
    trainings = {name: Training(project["metrics"] / "mnist" / f"{name}.json",
                                project["plots"] / "mnist" / f"{name}.csv")
                 for name in ("mnist_cnn", "mnist_dnn")}
    return build_report({"topics": topics}, project["reports"], trainings,
                        lambda name: project["reports"] / name)


def _png(path: Path, colour: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.set_facecolor(colour)
    fig.savefig(path, format="png", dpi=20)
    plt.close(fig)
    return path.read_bytes()


def _claim(claim: str, holds: bool | None, value: float | None = 1.5) -> dict:
    return {"claim": claim, "experiment": "exp", "evidence": f"measured {value}", "value": value,
            "holds": holds}


@pytest.fixture
def project(tmp_path) -> dict[str, Path]:
    """reports/ with two topics run (one figure), one expected topic missing, one extra."""
    reports, metrics, plots = tmp_path / "reports", tmp_path / "metrics", tmp_path / "plots"
    for d in (reports / "params", reports / "style", reports / "extra", metrics / "mnist",
              plots / "mnist"):
        d.mkdir(parents=True)
    (reports / "params" / "claims.json").write_text(json.dumps([
        _claim("A CNN needs fewer parameters", True, 4.7),
        _claim("Separable convs are cheaper", False, 0.9)]))
    (reports / "style" / "claims.json").write_text(json.dumps([
        _claim("Gram matrices carry style | texture", None, None)]))
    (reports / "extra" / "claims.json").write_text(json.dumps([_claim("An unlisted topic", True)]))
    (metrics / "mnist" / "mnist_cnn.json").write_text(json.dumps(
        {"test_acc": 0.987, "val_acc": 0.985, "params": 137660, "epochs": 2,
         "seconds_per_epoch": 3.2}))
    (plots / "mnist" / "mnist_cnn.csv").write_text("epoch,train_loss,val_acc\n1,0.5,0.95\n2,0.2,0.985\n")
    return {"reports": reports, "metrics": metrics, "plots": plots,
            "figure": reports / "style" / "transfer.png"}


def test_report_lists_every_claim_marks_missing_topics_and_embeds_figures(project):
    figure = _png(project["figure"], "red")
    result = report(project)
    assert result["claims"] == 4 and result["hold"] == 2 and result["fail"] == 1
    assert result["unmeasured"] == 1 and result["topics_not_run"] == 1
    assert result["topics"] == {"params": "2 claims", "audio": "not run", "style": "1 claims",
                                "extra": "1 claims"}

    md = (project["reports"] / "report.md").read_text()
    for text in ("A CNN needs fewer parameters", "Separable convs are cheaper", "An unlisted topic",
                 "Gram matrices carry style \\| texture", "measured 4.7", "137,660"):
        assert text in md
    assert md.index("## MNIST parameters") < md.index("## Speech") < md.index("## Style transfer")
    assert "Not run (no `audio/claims.json`)" in md
    assert "![transfer](style/transfer.png)" in md
    assert "![validation accuracy per epoch](training_curves.png)" in md
    assert "- env 1: this report\n- not in this MLflow store: mnist_cnn" in md  # no runs given
    assert f"| torch_threads | {torch.get_num_threads()} |" in md
    assert (project["reports"] / "training_curves.png").read_bytes()[:4] == b"\x89PNG"

    page = (project["reports"] / "report.html").read_text()
    assert base64.b64encode(figure).decode() in page  # self-contained: the figure is inside
    assert page.count("data:image/png;base64,") == 2  # the figure and the training curves
    assert "Gram matrices carry style | texture" in page and "not run" in page


def test_report_without_any_stage_output_says_not_run(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    result = report({"reports": reports, "metrics": tmp_path / "none", "plots": tmp_path / "none"})
    assert result["claims"] == 0 and result["topics_not_run"] == 3
    md = (reports / "report.md").read_text()
    assert md.count("Not run") == 3 and "No training metrics." in md
    assert not (reports / "training_curves.png").exists()


@pytest.mark.parametrize("content, problem", [
    ("[{\"claim\": \"half a file", "not readable JSON"),
    ("{\"claim\": \"a dict, not a list\"}", "list of rows"),
    (json.dumps([{"claim": "x"}]), "exactly the keys"),
    (json.dumps([_claim("holds is a string", True) | {"holds": "yes"}]), "bad holds"),
    (json.dumps([_claim("value is text", True) | {"value": "4.7"}]), "bad value"),
])
def test_corrupt_claims_file_is_named_and_no_report_is_written(project, content, problem):
    bad = project["reports"] / "params" / "claims.json"
    bad.write_text(content)
    with pytest.raises(DataError, match=problem) as err:
        report(project)
    assert str(bad) in str(err.value)
    assert not (project["reports"] / "report.md").exists()
    assert not (project["reports"] / "report.html").exists()


def test_corrupt_metrics_file_is_named(project):
    bad = project["metrics"] / "mnist" / "mnist_dnn.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="mnist_dnn.json"):
        report(project)


def test_environments_are_grouped_and_their_differences_marked():
    here = {"cpu": "AMD EPYC", "torch": "2.9.1", "git_commit": "abc"}
    envs = Environments.of({"this report": here, "mnist_cnn": here, "audio_dense": None,
                            "text_bag": {**here, "cpu": "Intel Xeon"}})
    assert envs.legend() == ["env 1: this report, mnist_cnn", "env 2: text_bag",
                             "not in this MLflow store: audio_dense"]
    assert envs.columns() == ["key", "env 1", "env 2"]
    assert envs.rows() == [{"key": "cpu (differs)", "env 1": "AMD EPYC", "env 2": "Intel Xeon"},
                           {"key": "torch", "env 1": "2.9.1", "env 2": "2.9.1"},
                           {"key": "git_commit", "env 1": "abc", "env 2": "abc"}]


def test_read_checked_claims_round_trips_valid_rows(tmp_path):
    path = tmp_path / "claims.json"
    rows = [_claim("a", True, 2), _claim("b", None, None)]
    path.write_text(json.dumps(rows))
    assert [(c.claim, c.value, c.holds) for c in read_checked_claims(path)] == [
        ("a", 2, True), ("b", None, None)]


def stage_paths(project: dict[str, Path]) -> list[str]:
    return [f"paths.{k}={project[k]}" for k in ("reports", "metrics", "plots")]


@pytest.mark.integration  # the stage itself, through MLflow and Hydra: seconds
def test_report_stage_writes_its_counts_and_logs_the_report(project, isolated_mlflow):
    import mlflow
    from mlflow.tracking import MlflowClient

    (project["reports"] / "params_report").mkdir()
    (project["reports"] / "params_report" / "claims.json").write_text(
        json.dumps([_claim("A CNN needs fewer parameters", True, 4.7)]))
    (project["metrics"] / "mnist" / "mnist_cnn.json").write_text(json.dumps(
        {"test_acc": 0.987, "epochs": 2, "fit_seconds": 12.345678901234567}))
    experiment = mlflow.create_experiment("mnist_cnn")
    for fit_seconds, cpu in ((12.345678901234567, "Test CPU 9000"), (12.3, "Other CPU")):
        with mlflow.start_run(experiment_id=experiment, tags=environment.as_tags(
                {**environment.gather(), "cpu": cpu})):  # trainings on other machines
            mlflow.log_metric("fit_seconds", fit_seconds)
    result = run_stage("report", *stage_paths(project))
    md = (project["reports"] / "report.md").read_text()
    assert "- env 1: this report\n- env 2: mnist_cnn\n" in md
    assert "| cpu (differs) | " in md
    assert "Test CPU 9000" in md and "Other CPU" not in md  # the run that wrote those numbers
    counts = json.loads((project["metrics"] / "report.json").read_text())
    assert counts["hold"] == result.metrics["hold"] == 3  # params_report, params, extra
    assert counts["topics"]["audio_results"] == "not run"
    client = MlflowClient(isolated_mlflow)
    (run,) = client.search_runs([client.get_experiment_by_name("report").experiment_id])
    assert run.data.metrics["hold"] == 3 and run.data.metrics["claims"] == 5
    logged = {a.path for folder in ("reports", "metrics")
              for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"reports/report.md", "reports/report.html", "reports/training_curves.png",
            "metrics/report.json"} <= logged
    assert environment.from_tags(run.data.tags) == environment.gather()


@pytest.mark.integration  # the stage itself, through MLflow and Hydra: seconds
def test_report_stage_reports_a_corrupt_claims_file_in_one_line(project, monkeypatch, capsys):
    (project["reports"] / "style" / "claims.json").write_text("[oops")
    monkeypatch.chdir(project["reports"].parent)
    code = run_script("report", *stage_paths(project))
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1].startswith(
        f"error: {project['reports'] / 'style' / 'claims.json'}: claims file is not readable JSON")
    assert "Traceback" not in err
