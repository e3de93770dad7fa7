"""`python -m cnnlab compare` on a real `dvc exp run` that changes one audio model's lr.

The copy trains `audio_freq_slide` and runs the context-window claims on a small FSDD subset,
commits that as main, then runs an experiment with a tenfold lr. The page must name the
param, give each changed metric with its delta, and list claim rows whose values changed:
every number as `dvc exp show --json` has it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from cnnlab.__main__ import main as cnnlab_main
from tests.e2e.conftest import GIT_USER, copy_repo, exp_show
from tests.integration.test_audio_pipeline import fsdd_subset, needs_fsdd

pytestmark = pytest.mark.e2e
LR = "train.audio_freq_slide.trainer.lr"
TARGETS = ("train@audio_freq_slide", "context_windows")


def audio_tiny(recordings: Path) -> dict[str, dict[str, Any]]:
    return {
        "data/audio.yaml": {"source": "folder", "folder": str(recordings),
                            "split": {"test_speakers": ["nicolas"], "val_speakers": 0,  # 80 train
                                      "val_fraction": 0.2},
                            "pitch_shift": {"semitones": [0, 2]}},
        "experiment/audio_freq_slide.yaml": {"trainer": {"max_epochs": 2, "batch_size": 8}},
        "analysis/context_windows.yaml": {"windows": [5, 21], "max_windows": 1,  # 3 steps an
                                          "seeds": [42, 43], "max_epochs": 2, "batch_size": 8},
    }


def dig(tree: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[part]
    return tree


@needs_fsdd
def test_compare_an_lr_experiment_against_main_agrees_with_dvc_exp_show(
        tmp_path, mlflow_template, monkeypatch, capsys):
    recordings = fsdd_subset(tmp_path / "rec", ("jackson", "nicolas", "george"), range(5))
    dest, run = copy_repo(tmp_path / "repo", mlflow_template, audio_tiny(recordings))
    run("dvc", "repro", *TARGETS)
    run("git", "add", "-A")
    run("git", *GIT_USER, "commit", "-qm", "baseline")
    run("dvc", "exp", "run", "-n", "fast_lr", "-S", f"{LR}=0.03", *TARGETS)

    shown = run("python", "-m", "cnnlab", "compare", "main", "fast_lr", "--md", "--out", "cmp")
    page = json.loads((dest / "cmp" / "compare.json").read_text())
    table = exp_show(json.loads(run("dvc", "exp", "show", "--json").stdout))
    main, exp = table["main"], table["fast_lr"]

    assert page["params"] == [{"param": LR, "a": dig(main["params"], LR),
                               "b": dig(exp["params"], LR)}]
    assert page["params"][0]["b"] == 0.03

    metrics = {m["key"]: m for m in page["metrics"]}
    loss = metrics["metrics/audio/audio_freq_slide.json:test_loss"]  # always moves with the lr
    want_a = main["metrics"]["metrics/audio/audio_freq_slide.json"]["test_loss"]
    want_b = exp["metrics"]["metrics/audio/audio_freq_slide.json"]["test_loss"]
    assert (loss["a"], loss["b"]) == (want_a, want_b)
    assert loss["delta"] == pytest.approx(want_b - want_a) and loss["judged"] == ""  # one seed
    for key, m in metrics.items():  # every metric the page lists is exp show's, and differs
        file, _, dotted = key.partition(":")
        assert m["a"] == dig(main["metrics"][file], dotted) != m["b"] == dig(exp["metrics"][file],
                                                                             dotted)
    assert not any(m["key"].endswith("fit_seconds") for m in page["metrics"])  # a timing
    assert any(m["key"].endswith("fit_seconds") for m in page["timings"])

    assert page["claims"]  # each a window size k whose claim's value (unseen voices) moved
    for claim in page["claims"]:
        k = re.search(r"k=(\d+)$", claim["experiment"]).group(1)
        unseen = f"windows.{k}.unseen.diff"
        assert claim["a"]["value"] == dig(main["metrics"]["metrics/context_windows.json"], unseen)
        assert claim["b"]["value"] == dig(exp["metrics"]["metrics/context_windows.json"], unseen)
        assert (claim["a"]["value"], claim["a"]["verdict"]) != (claim["b"]["value"],
                                                                claim["b"]["verdict"])
    assert page["environments"]["a"]["torch"] and page["environment_differs"] == []  # one machine

    md = shown.stdout  # the markdown a pull-request comment gets
    assert f"| {LR} | 0.003 | 0.03 |" in md
    assert f"| {page['claims'][0]['experiment']} |" in md
    assert "![validation accuracy" in md and (dest / "cmp" / "compare_curves.png").is_file()
    html = (dest / "cmp" / "compare.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html  # self-contained

    # the rest in this process (the entry point ran above): the copy as the project
    monkeypatch.chdir(dest)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{dest / 'mlflow.db'}")
    assert cnnlab_main(["compare", "--out", "cmp_default"]) == 0  # HEAD against the workspace
    assert "1 params" in capsys.readouterr().out
    again = json.loads((dest / "cmp_default" / "compare.json").read_text())
    assert again["params"] == page["params"] and again["claims"] == page["claims"]

    client = MlflowClient(f"sqlite:///{dest / 'mlflow.db'}")  # the two trainings' runs
    runs = client.search_runs([client.get_experiment_by_name("audio_freq_slide").experiment_id],
                              "attributes.status = 'FINISHED'", order_by=["attributes.start_time"])
    old, new = runs[0].info.run_id, runs[-1].info.run_id
    assert cnnlab_main(["compare", old, new, "--out", "cmp_runs"]) == 0
    by_runs = json.loads((dest / "cmp_runs" / "compare.json").read_text())
    assert {"param": "trainer.lr", "a": "0.003", "b": "0.03"} in by_runs["params"]
    (run_acc,) = [m for m in by_runs["metrics"] if m["key"] == "test_loss"]
    assert (run_acc["a"], run_acc["b"]) == (loss["a"], loss["b"])
    assert by_runs["environment_differs"] == [] and by_runs["claims"] == []

    capsys.readouterr()
    assert cnnlab_main(["compare", "main", "no_such_thing"]) == 2
    assert capsys.readouterr().err.strip() == ("error: compare: 'no_such_thing' is not a git "
                                               "revision, a DVC experiment or an MLflow run id")
