"""Text end to end: prepare a small CSV, train Kim's CNN for an epoch, write the results."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.analysis import sentences
from cnnlab.core.claims import read_claims
from cnnlab.data import text
from cnnlab.data.prepared import load_prepared, write_prepared
from cnnlab.core.errors import DataError
from cnnlab.core.io import atomic_dir, write_json
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.training.run import RunOutputs, train_experiment

ROOT = Path(__file__).resolve().parents[2]
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


def prepare(tmp_path: Path, csv_path: Path) -> Path:
    """What stage prepare_text does, on a user's CSV with the real GloVe vectors."""
    cfg = {"source": "csv", "csv_path": str(csv_path), "text_column": "review",
           "label_column": "verdict", "labels": ["negative", "positive"], "drop_labels": [],
           "val_fraction": 0.25, "test_fraction": 0.25, "seed": 0, "min_count": 1,
           "max_len": 12, "glove_dir": None}
    prepared = text.prepare_text(cfg)
    out = tmp_path / "prepared" / "text"
    with atomic_dir(out) as tmp:
        text.write_vocab(tmp / "vocab.txt", prepared.vocab)
        write_prepared(tmp, prepared.splits, prepared.manifest, prepared.extras)
    return out


def test_prepare_then_train_one_epoch(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data_dir = prepare(tmp_path, write_reviews(tmp_path / "reviews.csv"))
    data = load_prepared(data_dir)
    assert data.train.x.dtype == torch.int64 and data.input_shape == (12,)
    assert data.manifest["vectors"]["coverage"]["vocab"] > 0.9  # plain English words
    glove = data.extras["embeddings"]
    assert glove.shape == (data.manifest["vocab_size"], 50)

    cfg = {"model": {"name": "kim", "embedding": "static", "windows": [3, 4, 5], "filters": 8,
                     "dropout": 0.5},
           "trainer": {"max_epochs": 1, "batch_size": 4, "eval_batch_size": 100,
                       "optimizer": "adam", "lr": 0.01},
           "seed": 0, "register_model": False}
    outputs = RunOutputs.under(tmp_path / "models", tmp_path / "metrics", tmp_path / "plots",
                               "text_kim_static")
    metrics = train_experiment("text_kim_static", cfg, data_dir, outputs)
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_acc"] <= 1.0
    assert metrics["params"] - metrics["trainable_params"] == glove.numel()  # frozen vectors
    model, meta = load_checkpoint(outputs.checkpoint)
    assert torch.equal(model.embedding.weight, glove)  # still GloVe after training
    assert meta["classes"] == ["negative", "positive"]
    assert json.loads(outputs.metrics.read_text())["test_acc"] == metrics["test_acc"]


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
    assert not (tmp_path / "prepared" / "text").exists()  # nothing half-written


# ------------------------------------------------------------- results ----
def fake_metrics(folder: Path, accs: dict[str, float], params: dict[str, int]) -> None:
    for name, acc in accs.items():
        write_json(folder / f"{name}.json", {"test_acc": acc, "params": params[name],
                                             "trainable_params": params[name], "epochs": 4,
                                             "seconds_per_epoch": 2.0, "fit_seconds": 8.0})


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    write_json(path, {"vocab_size": 1000, "embedding_dim": 50, "min_count": 2, "max_len": 50,
                      "sizes": {"train": 8000, "val": 1000, "test": 1000},
                      "vectors": {"coverage": {"vocab": 0.99, "tokens": 0.96}}})
    return path


def test_results_table_and_claims(tmp_path: Path, manifest: Path):
    names = [e.name for e in sentences.EXPERIMENTS]
    accs = dict(zip(names, [0.74, 0.72, 0.785, 0.75, 0.73], strict=True))
    params = dict(zip(names, [110_000, 110_000, 110_000, 109_000, 50_100], strict=True))
    fake_metrics(tmp_path / "metrics", accs, params)
    results = sentences.write_text_results(tmp_path / "metrics", manifest, tmp_path / "out")
    rows = {r["experiment"]: r for r in results.rows}
    assert rows["text_kim_nonstatic"]["test acc %"] == 78.5
    assert rows["text_kim_nonstatic"]["params w/o embedding"] == 110_000 - 50_000
    assert rows["text_kim_nonstatic"]["Kim (2014) on MR %"] == "81.5 (CNN-non-static)"
    assert rows["text_emb2d"]["Kim (2014) on MR %"] is None
    claims = read_claims(tmp_path / "out" / "claims.json")
    assert [c.holds for c in claims] == [True, True, True]
    assert claims[1].value == pytest.approx(0.035)
    report = (tmp_path / "out" / "results.md").read_text()
    assert "word2vec" in report and "GloVe" in report and "| text_bag |" in report
    assert json.loads((tmp_path / "out" / "results.json").read_text())["kim_2014_mr"][
        "static"]["accuracy"] == 81.0


def test_claims_that_fail_or_cannot_be_judged(tmp_path: Path, manifest: Path):
    names = [e.name for e in sentences.EXPERIMENTS]
    accs = dict(zip(names, [0.70, 0.70, 0.76, 0.77, 0.78], strict=True))
    params = dict(zip(names, [110_000, 110_000, 110_000, 55_000, 50_100], strict=True))
    fake_metrics(tmp_path / "metrics", accs, params)
    claims = sentences.write_text_results(tmp_path / "metrics", manifest, tmp_path / "out").claims
    assert claims[0].holds is False  # 76% < 78%
    assert claims[1].holds is None and "not comparable" in claims[1].evidence
    assert claims[2].holds is False  # the bag beat the CNN


def test_results_need_every_metrics_file(tmp_path: Path, manifest: Path):
    (tmp_path / "metrics").mkdir()
    with pytest.raises(DataError, match="text_kim_rand.json"):
        sentences.write_text_results(tmp_path / "metrics", manifest, tmp_path / "out")
    with pytest.raises(DataError, match="missing"):
        sentences.write_text_results(tmp_path / "metrics", tmp_path / "no.json", tmp_path / "out")
    assert not (tmp_path / "out").exists()
