"""Text end to end: prepare a small CSV, train Kim's CNN for an epoch, write the results."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.core.claims import read_claims
from cnnlab.core.errors import DataError
from cnnlab.core.io import write_json
from cnnlab.data.prepared import load_prepared
from cnnlab.training.checkpoint import load_checkpoint
from tests.conftest import ROOT, compose_config
from tests.stages import run_stage

GOOD = ["a moving , funny and wise film", "great acting and a clever script",
        "the best thing i have seen this year", "warm , smart and beautifully made"]
BAD = ["a dull and lifeless mess", "boring , predictable and far too long",
       "the worst script i have seen this year", "clumsy , cold and badly acted"]


def write_reviews(path: Path, n: int = 12) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review", "verdict"])
        for i in range(n):
            writer.writerow([2 * i, f"{GOOD[i % 4]} , take {i}", "positive"])
            writer.writerow([2 * i + 1, f"{BAD[i % 4]} , take {i}", "negative"])
    return path


CSV = ["data.text.source=csv", "data.text.text_column=review", "data.text.label_column=verdict",
       "data.text.labels=[negative,positive]", "data.text.drop_labels=[]",
       "data.text.val_fraction=0.25", "data.text.test_fraction=0.25", "data.text.min_count=1",
       "data.text.max_len=12"]


def test_prepare_then_train_one_epoch(tmp_path: Path):
    csv_path = write_reviews(tmp_path / "reviews.csv")
    paths = [f"paths.{k}={tmp_path / k}" for k in ("prepared", "models", "metrics", "plots")]
    run_stage("prepare_text", *CSV, f"data.text.csv_path={csv_path}", *paths)
    data = load_prepared(tmp_path / "prepared" / "text")
    assert data.train.x.dtype == torch.int64 and data.input_shape == (12,)
    assert data.manifest["vectors"]["coverage"]["vocab"] > 0.9  # plain English words
    glove = data.extras["embeddings"]
    assert glove.shape == (data.manifest["vocab_size"], 50)
    assert (tmp_path / "prepared" / "text" / "vocab.txt").is_file()

    exp = "train.text_kim_static"
    metrics = run_stage("train", "run=text_kim_static", *paths, f"{exp}.register_model=false",
                        f"{exp}.model.filters=8", f"{exp}.trainer.max_epochs=1",
                        f"{exp}.trainer.batch_size=4").metrics
    assert metrics["epochs"] == 1
    assert metrics["params"] - metrics["trainable_params"] == glove.numel()  # frozen vectors
    model, meta = load_checkpoint(tmp_path / "models" / "text_kim_static" / "model.ckpt")
    assert torch.equal(model.embedding.weight, glove)  # still GloVe after training
    assert meta["classes"] == ["negative", "positive"]
    assert json.loads((tmp_path / "metrics/text/text_kim_static.json").read_text()) == metrics


def test_prepare_stage_reports_bad_csv_in_one_line(tmp_path: Path):
    bad = tmp_path / "reviews.csv"
    bad.write_text("id,review,verdict\n1,a fine film,positive\n2,a dull film,meh\n")
    result = subprocess.run(
        [sys.executable, "pipelines/prepare_text.py", "data.text.source=csv",
         f"data.text.csv_path={bad}", "data.text.text_column=review",
         "data.text.label_column=verdict", "data.text.labels=[negative,positive]",
         f"paths.prepared={tmp_path / 'prepared'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"error: {bad}, line 3: unknown label 'meh'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "prepared").exists()  # nothing half-written


# ------------------------------------------------------------- results ----
NAMES = [name for name, exp in compose_config()["train"].items() if exp["dataset"] == "text"]


@pytest.fixture
def results(tmp_path: Path):
    """Fake metrics for every text experiment and a manifest; runs stage text_results."""
    write_json(tmp_path / "prepared" / "text" / "manifest.json", {
        "vocab_size": 1000, "embedding_dim": 50, "min_count": 2, "max_len": 50,
        "sizes": {"train": 8000, "val": 1000, "test": 1000},
        "vectors": {"coverage": {"vocab": 0.99, "tokens": 0.96}}})

    def run(accs: list[float], params: list[int]):
        for name, acc, n in zip(NAMES, accs, params, strict=True):
            write_json(tmp_path / "metrics" / "text" / f"{name}.json", {
                "test_acc": acc, "params": n, "trainable_params": n, "epochs": 4,
                "seconds_per_epoch": 2.0, "fit_seconds": 8.0})
        return run_stage("text_results",
                         *(f"paths.{k}={tmp_path / k}" for k in ("prepared", "metrics", "reports")))

    return run


def test_text_experiments_come_from_the_params():
    assert NAMES == ["text_kim_rand", "text_kim_static", "text_kim_nonstatic", "text_emb2d",
                     "text_bag"]


def test_results_table_and_claims(tmp_path: Path, results):
    results([0.74, 0.72, 0.785, 0.75, 0.73], [110_000, 110_000, 110_000, 109_000, 50_100])
    out = tmp_path / "reports" / "text_results"
    rows = {r["experiment"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert list(rows) == NAMES
    assert rows["text_kim_nonstatic"]["test acc %"] == 78.5
    assert rows["text_kim_nonstatic"]["params w/o embedding"] == 110_000 - 50_000
    assert rows["text_kim_nonstatic"]["Kim (2014) on MR %"] == "81.5 (CNN-non-static)"
    assert rows["text_emb2d"]["Kim (2014) on MR %"] is None
    assert rows["text_bag"]["model"] == compose_config()["train"]["text_bag"]["description"]
    claims = read_claims(out / "claims.json")
    assert [c.holds for c in claims] == [True, True, True]
    assert claims[1].value == pytest.approx(0.035)
    report = (out / "results.md").read_text()
    assert "word2vec" in report and "GloVe" in report and "| text_bag |" in report
    assert json.loads((tmp_path / "metrics" / "text_results.json").read_text())[
        "text_bag"]["test_acc"] == 0.73


def test_claims_that_fail_or_cannot_be_judged(tmp_path: Path, results):
    claims = results([0.70, 0.70, 0.76, 0.77, 0.78], [110_000, 110_000, 110_000, 55_000, 50_100]
                     ).claims
    assert claims[0].holds is False  # 76% < 78%
    assert claims[1].holds is None and "not comparable" in claims[1].evidence
    assert claims[2].holds is False  # the bag beat the CNN


def test_results_need_every_metrics_file_and_the_manifest(tmp_path: Path, results):
    results([0.7] * 5, [100] * 5)
    rerun = [f"paths.{k}={tmp_path / k}" for k in ("prepared", "metrics", "reports")]
    (tmp_path / "metrics" / "text" / "text_kim_rand.json").unlink()
    with pytest.raises(DataError, match="text_kim_rand.json"):
        run_stage("text_results", *rerun)
    (tmp_path / "prepared" / "text" / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json"):
        run_stage("text_results", *rerun)
