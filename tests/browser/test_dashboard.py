"""What a person sees in the MLflow dashboard after one tiny training run of the train stage:
its metrics, figures and dataset, the environment it ran in and its system metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from mlflow.tracking import MlflowClient
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tests.servers import free_port
from tests.stages import run_stage

WAIT_S = 60  # the React app takes ~15 s to render a first page on a busy 2-core machine
TINY = ("max_epochs=1", "limit_train_batches=4", "limit_val_batches=1", "limit_test_batches=1",
        "accelerator=cpu")


@contextmanager
def dashboard(store_uri: str, folder: Path) -> Iterator[str]:
    """`mlflow ui` over `store_uri` on a free port of 127.0.0.1; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store_uri,
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
    try:
        while not _healthy(url):
            assert proc.poll() is None, f"mlflow ui exited with {proc.returncode}"
            assert time.monotonic() < deadline, "mlflow ui did not answer /health in 120 s"
            time.sleep(0.3)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


def _healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=1).ok
    except requests.RequestException:
        return False


def visible(driver: WebDriver, xpath: str):
    return WebDriverWait(driver, WAIT_S).until(EC.visibility_of_element_located((By.XPATH, xpath)))


def text_is(text: str) -> str:
    return f"//*[normalize-space(text())='{text}']"


def smallest_text_holding(driver: WebDriver, *texts: str) -> str:
    """The shortest textContent of an element that contains every one of `texts` ('' if none)."""
    xpath = "//body//*[" + " and ".join(f"contains(., '{t}')" for t in texts) + "]"
    return driver.execute_script(
        "const r = document.evaluate(arguments[0], document, null, 7, null); let best = '';"
        "for (let i = 0; i < r.snapshotLength; i++) { const t = r.snapshotItem(i).textContent;"
        "  if (!best || t.length < best.length) best = t; } return best;", xpath)


def test_a_training_run_shows_its_metric_figures_dataset_environment_and_system_metrics(
        browser: WebDriver, tmp_path: Path, tiny_mnist: Path, isolated_mlflow: str) -> None:
    run_stage("train", "run=mnist_cnn", f"paths.prepared={tiny_mnist.parent}",
              *(f"paths.{k}={tmp_path / k}" for k in ("models", "metrics", "plots")),
              *(f"train.mnist_cnn.trainer.{o}" for o in TINY),
              "tracking.system_metrics_interval=0.1")  # a tiny training lasts a few seconds
    client = MlflowClient()
    eid = client.get_experiment_by_name("mnist_cnn").experiment_id
    (run,) = client.search_runs([eid])
    rid, test_acc = run.info.run_id, str(run.data.metrics["test_acc"])
    threads = run.data.tags["cnnlab.env.torch_threads"]
    capability = run.data.tags["cnnlab.env.cpu_capability"]
    system = [k for k in run.data.metrics if k.startswith("system/")]
    assert "system/cpu_utilization_percentage" in system
    datasets = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert "mnist" in datasets, f"the run logged no dataset 'mnist' (mlflow.log_input): {datasets}"
    digest = datasets["mnist"]
    shots = tmp_path / "screenshots"
    shots.mkdir()

    with dashboard(isolated_mlflow, tmp_path) as url:
        # MLflow 3 sends /#/experiments/<id> to its GenAI overview; the runs table is /runs
        browser.get(f"{url}/#/experiments/{eid}/runs")
        visible(browser, f"//a[contains(@href, '/runs/{rid}')]")
        browser.save_screenshot(str(shots / "experiment.png"))
        assert visible(browser, "//*[contains(text(), 'matching run')]").text == "1 matching run"

        browser.get(f"{url}/#/experiments/{eid}/runs/{rid}")
        visible(browser, text_is("test_acc"))
        browser.save_screenshot(str(shots / "run.png"))
        assert test_acc in browser.find_element(By.TAG_NAME, "body").text
        assert len(smallest_text_holding(browser, "test_acc", test_acc)) < 60  # in one row
        label = "//*[not(ancestor::a)][normalize-space(text())='Datasets']"  # not the nav link
        visible(browser, f"{label}/following::*[normalize-space(.)='mnist ({digest})']")
        for key, value in (("cnnlab.env.torch_threads", threads), ("cnnlab.env.cpu_capability",
                                                                   capability)):
            tag = smallest_text_holding(browser, key, f": {value}")  # the key and its value
            assert " ".join(tag.split()) == f"{key}: {value}", tag

        browser.get(f"{url}/#/experiments/{eid}/runs/{rid}/system-metrics")
        visible(browser, f"{text_is('System metrics')}/following-sibling::*"  # one chart each
                         f"[normalize-space(.)='({len(system)})']")
        visible(browser, "//*[contains(text(), 'cpu_utilization')]")
        WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script(  # a line, not a blank chart
            "return [...document.querySelectorAll('.scatterlayer path.js-line')]"
            ".some(p => (p.getAttribute('d') || '').includes('L'))"))
        browser.save_screenshot(str(shots / "system-metrics.png"))

        browser.get(f"{url}/#/experiments/{eid}/runs/{rid}/artifacts")
        node = "//*[@data-testid='artifact-tree-node'][@artifact-name='{}']"
        WebDriverWait(browser, WAIT_S).until(
            EC.element_to_be_clickable((By.XPATH, node.format("figures")))).click()
        shown: list[str] = []  # blob: URLs of the previews, one new image per figure
        for figure in ("confusion_matrix.png", "training_curves.png"):
            visible(browser, node.format(figure)).click()
            visible(browser, text_is(f"figures/{figure}"))  # the preview's header
            shown.append(WebDriverWait(browser, WAIT_S).until(lambda d: d.execute_script(
                "return [...document.images].map(i => i.complete && i.naturalWidth > 0"
                " && i.src.startsWith('blob:') && !arguments[0].includes(i.src) && i.src)"
                ".find(Boolean) || null", shown)))
            browser.save_screenshot(str(shots / f"artifacts-{figure}"))
