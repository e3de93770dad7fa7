"""The registered model of an experiment, served by `mlflow models serve` on the project's own
environment, answers like its checkpoint; `predict name:version` does too."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import torch
from PIL import Image

from cnnlab.__main__ import main
from cnnlab.data.prepared import load_prepared
from cnnlab.services.processes import wait_until
from cnnlab.training.batches import as_model_input
from cnnlab.training.checkpoint import load_checkpoint
from tests.conftest import TINY_TRAINER
from tests.servers import free_port
from tests.stages import run_stage


class ModelServer:
    """`mlflow models serve -m <uri> --env-manager local` on a free port of 127.0.0.1."""

    def __init__(self, model_uri: str, tracking_uri: str, log: Path) -> None:
        self.model_uri, self.tracking_uri, self.log = model_uri, tracking_uri, log
        self.url = f"http://127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> ModelServer:
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri,  # uvicorn is beside python
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "models", "serve", "-m", self.model_uri,
                 "--env-manager", "local", "-h", "127.0.0.1", "-p", self.url.rsplit(":", 1)[1]],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait(self) -> None:
        wait_until(self._answers, "mlflow models serve", 180, self.log, self.proc)

    def _answers(self) -> bool:
        try:
            return requests.get(f"{self.url}/ping", timeout=1).ok
        except requests.RequestException:
            return False

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.mark.usefixtures("one_thread")
def test_registered_model_serves_and_predicts_like_its_checkpoint(tmp_path, tiny_mnist, capsys,
                                                                  isolated_mlflow):
    paths = [f"paths.prepared={tiny_mnist.parent}",
             *(f"paths.{k}={tmp_path / k}" for k in ("models", "metrics", "plots", "reports"))]
    shrink = [f"train.mnist_cnn.trainer.{k}={v}" for k, v in TINY_TRAINER.items()]
    run_stage("train", "run=mnist_cnn", *paths, *shrink, "train.mnist_cnn.register_model=true")
    model, _ = load_checkpoint(tmp_path / "models" / "mnist_cnn" / "model.ckpt")
    test = load_prepared(tiny_mnist).test
    with torch.no_grad():
        expected = model(as_model_input(test.x[:2].clone()))
    files = []
    for i in range(2):
        files.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray(test.x[i, 0].numpy()).save(files[-1])
    where = ["-o", f"paths.prepared={tiny_mnist.parent}", "-o", f"paths.models={tmp_path / 'none'}"]

    capsys.readouterr()
    assert main(["predict", "mnist_cnn:1", *files, "--json", *where]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "models:/mnist_cnn/1"
    probs = torch.softmax(expected.double(), dim=1)
    for pred, row in zip(out["predictions"], probs, strict=True):
        assert [t["probability"] for t in pred["top"]] == pytest.approx(row.topk(3).values.tolist(),
                                                                         abs=1e-5)

    assert main(["predict", "mnist_cnn:1", *files, "--request", *where]) == 0
    body = capsys.readouterr().out  # MLflow's {"inputs": ...}, made by predict from the PNGs
    with ModelServer("models:/mnist_cnn/1", isolated_mlflow, tmp_path / "serve.log") as server:
        answer = requests.post(f"{server.url}/invocations", data=body, timeout=60,
                               headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    torch.testing.assert_close(torch.tensor(answer.json()["predictions"]), expected, atol=1e-4,
                               rtol=0)
