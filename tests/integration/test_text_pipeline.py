"""Text end to end: prepare a small CSV, train Kim's CNN for an epoch, write the results."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from cnnlab.core.claims import read_claims
from cnnlab.core.errors import DataError
from cnnlab.core.io import write_json
from cnnlab.data.prepared import Split, load_prepared, write_prepared
from cnnlab.models import InputSpec, build_model
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import compose_config
from tests.stages import run_script, run_stage

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


def test_prepare_stage_reports_bad_csv_in_one_line(tmp_path: Path, capsys):
    bad = tmp_path / "reviews.csv"
    bad.write_text("id,review,verdict\n1,a fine film,positive\n2,a dull film,meh\n")
    code = run_script("prepare_text", "data.text.source=csv", f"data.text.csv_path={bad}",
                      "data.text.text_column=review", "data.text.label_column=verdict",
                      "data.text.labels=[negative,positive]",
                      f"paths.prepared={tmp_path / 'prepared'}")
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: {bad}, line 3: unknown label 'meh'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "prepared").exists()  # nothing half-written


# ------------------------------------------------------------- results ----
NAMES = [name for name, exp in compose_config()["train"].items() if exp["dataset"] == "text"]


TINY = {"text_kim_nonstatic": {"name": "kim", "embedding": "nonstatic", "filters": 4},
        "text_emb2d": {"name": "emb2d", "embedding": "nonstatic", "channels": 3, "width": 5,
                       "stride": 5, "hidden": [4]}}


def tiny_text_data(tmp_path: Path) -> None:
    """A prepared text dataset (random ids, 500 test texts) and an untrained checkpoint of
    each model the permutation check loads."""
    gen = torch.Generator().manual_seed(0)
    splits = {name: Split(torch.randint(1, 100, (n, 20), generator=gen),
                          torch.randint(0, 2, (n,), generator=gen))
              for name, n in (("train", 8), ("val", 8), ("test", 500))}
    out = tmp_path / "prepared" / "text"
    out.mkdir(parents=True)
    write_prepared(out, splits, {
        "classes": ["neg", "pos"], "input_shape": [20], "vocab_size": 1000, "embedding_dim": 50,
        "min_count": 2, "max_len": 50, "vectors": {"coverage": {"vocab": 0.99, "tokens": 0.96}}})
    spec = InputSpec((20,), 2, {"embeddings": torch.randn(100, 50, generator=gen)})
    for name, cfg in TINY.items():
        torch.manual_seed(0)
        save_checkpoint(tmp_path / "models" / name / "model.ckpt", build_model(cfg, spec), cfg,
                        spec, ["neg", "pos"], name)


@pytest.fixture
def results(tmp_path: Path):
    """Fake metrics for every text experiment (and, if given, for further seeds), a prepared
    dataset and untrained models; runs stage text_results."""
    tiny_text_data(tmp_path)

    def run(accs: list[float], params: list[int], more: dict | None = None):
        for name, acc, n in zip(NAMES, accs, params, strict=True):
            write_json(tmp_path / "metrics" / "text" / f"{name}.json", {
                "test_acc": acc, "params": n, "trainable_params": n, "epochs": 4,
                "seconds_per_epoch": 2.0, "fit_seconds": 8.0})
        if more:
            write_json(tmp_path / "metrics" / "text" / "seeds.json", {
                name: {"seeds": [43, 44], "test_acc": accs} for name, accs in more.items()})
        return run_stage("text_results", "analysis.text_results.permutations=2", *(
            f"paths.{k}={tmp_path / k}" for k in ("prepared", "metrics", "reports", "models",
                                                  "plots")))

    return run


def test_text_experiments_come_from_the_params():
    assert NAMES == ["text_kim_rand", "text_kim_static", "text_kim_nonstatic", "text_emb2d",
                     "text_bag"]


def test_results_table_and_claims(tmp_path: Path, results):
    results([0.74, 0.72, 0.80, 0.70, 0.65], [110_000, 110_000, 110_000, 109_000, 50_100],
            {"text_kim_nonstatic": [0.81, 0.79], "text_emb2d": [0.705, 0.695],
             "text_bag": [0.655, 0.645]})
    out = tmp_path / "reports" / "text_results"
    rows = {r["experiment"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert list(rows) == NAMES
    assert rows["text_kim_nonstatic"]["test acc %"] == 80.0
    assert rows["text_kim_nonstatic"]["params w/o embedding"] == 110_000 - 50_000
    assert rows["text_kim_nonstatic"]["Kim (2014) on MR %"] == "81.5 (CNN-non-static)"
    assert rows["text_emb2d"]["Kim (2014) on MR %"] is None
    assert rows["text_bag"]["model"] == compose_config()["train"]["text_bag"]["description"]
    assert rows["text_kim_nonstatic"]["seeds"] == 3 and rows["text_kim_rand"]["seeds"] == 1
    assert rows["text_kim_nonstatic"]["mean ± SE %"].startswith("80.00 ± ")
    claims = read_claims(out / "claims.json")
    # 80% against the 78% target is ~1 standard error on 500 texts; 10 and 15 points, 3 seeds
    assert [c.label for c in claims[:3]] == ["not shown", "yes", "yes"]
    assert claims[1].value == pytest.approx(0.10)
    assert "3 seeds" in claims[1].evidence and "standard errors" in claims[1].evidence
    permuted = json.loads((out / "results.json").read_text())["permutation"]
    assert permuted["text_kim_nonstatic"]["max_accuracy_change"] == 0  # exactly invariant
    assert permuted["text_emb2d"]["max_logit_change"] > 1e-4  # the 2-D kernels are not
    assert claims[3].experiment == "text_kim_nonstatic vs text_emb2d, permuted embedding dimensions"
    report = (out / "results.md").read_text()
    assert "word2vec" in report and "GloVe" in report and "| text_bag |" in report
    assert json.loads((tmp_path / "metrics" / "text_results.json").read_text())[
        "text_bag"]["test_acc"] == 0.65


def test_claims_that_fail_or_cannot_be_judged(tmp_path: Path, results):
    claims = results([0.70, 0.70, 0.70, 0.77, 0.80], [110_000, 110_000, 110_000, 55_000, 50_100],
                     {"text_kim_nonstatic": [0.71, 0.69], "text_bag": [0.81, 0.79]}).claims
    assert claims[0].holds is False  # 70% < 78%
    assert claims[1].label == "not measurable" and "not comparable" in claims[1].evidence
    assert claims[2].label == "no"  # the bag beat the CNN by 10 points, on 3 seeds


def test_one_seed_or_a_small_difference_is_not_shown(tmp_path: Path, results):
    claims = results([0.70, 0.70, 0.79, 0.78, 0.77], [110_000] * 5).claims  # no seeds.json
    assert [c.label for c in claims[1:3]] == ["not shown", "not shown"]
    assert "one seed" in claims[1].evidence


def test_results_need_every_metrics_file_and_the_manifest(tmp_path: Path, results):
    results([0.7] * 5, [100] * 5)
    rerun = [f"paths.{k}={tmp_path / k}" for k in ("prepared", "metrics", "reports", "models")]
    (tmp_path / "metrics" / "text" / "text_kim_rand.json").unlink()
    with pytest.raises(DataError, match="text_kim_rand.json"):
        run_stage("text_results", *rerun)
    (tmp_path / "prepared" / "text" / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json"):
        run_stage("text_results", *rerun)
