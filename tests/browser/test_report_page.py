"""The final report as a reader opens it: reports/report.html from disk in Chromium."""

from __future__ import annotations

import json
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import compose_config
from tests.stages import run_stage

TINY = ("max_epochs=1", "limit_train_batches=4", "limit_val_batches=1", "limit_test_batches=1",
        "accelerator=cpu")


def squeeze(text: str) -> str:
    return " ".join(text.split())


def build_reports(tmp_path: Path, prepared: Path) -> None:
    """Tiny trainings, the params and filters stages, then the report, all under tmp_path."""
    paths = [f"paths.prepared={prepared}",
             *(f"paths.{k}={tmp_path / k}" for k in ("models", "metrics", "plots", "reports"))]
    for name in ("mnist_cnn", "mnist_dnn", "mnist_separable"):
        run_stage("train", f"run={name}", *paths, *(f"train.{name}.trainer.{o}" for o in TINY))
    run_stage("params_report", *paths)
    run_stage("units", "run=filters", *paths, "analysis.filters.steps=3",
              "analysis.filters.max_test=100", "analysis.filters.threads=1")
    run_stage("report", *paths)


def test_report_page_shows_every_figure_and_one_row_per_claim(
        browser: WebDriver, tmp_path: Path, tiny_mnist: Path) -> None:
    build_reports(tmp_path, tiny_mnist.parent)
    reports = tmp_path / "reports"
    topics = compose_config()["analysis"]["report"]["topics"]
    ran = sorted(p.parent for p in reports.glob("*/claims.json"))
    assert {p.name for p in ran} >= {"params_report", "filters"}
    claims = sorted((squeeze(c["claim"]), c["experiment"])
                    for folder in ran for c in json.loads((folder / "claims.json").read_text()))
    not_run = [t for t in topics if not (reports / t / "claims.json").is_file()]
    figures = [p for folder in ran for p in folder.glob("*.png")]
    assert claims and figures

    browser.get((reports / "report.html").as_uri())
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert browser.title == "cnnlab report"
    assert f" of {len(claims)} claims hold;" in browser.find_element(By.TAG_NAME, "p").text

    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) == 1 + len(figures)  # the training curves, then each topic's figures
    loaded = browser.execute_script(
        "return [...document.images].map(i => i.complete && i.naturalWidth > 0)")
    broken = [i.get_attribute("alt") for i, ok in zip(images, loaded, strict=True) if not ok]
    assert not broken, f"images that did not load: {broken}"

    table = browser.find_element(By.XPATH, "//h2[normalize-space(.)='Claims']/following::table[1]")
    head = [squeeze(th.text) for th in table.find_elements(By.TAG_NAME, "th")]
    assert head == ["topic", "claim", "experiment", "measured", "value", "holds"]
    rows = [[squeeze(td.text) for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in table.find_elements(By.XPATH, ".//tr[td]")]
    assert len(rows) == len(claims) + len(not_run)
    assert sorted((r[1], r[2]) for r in rows if r[5] != "not run") == claims
    assert sorted(r[2] for r in rows if r[5] == "not run") == sorted(not_run)
    assert {r[5] for r in rows} <= {"yes", "no", "not shown", "not measurable", "not run"}
