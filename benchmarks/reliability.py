"""Reliability, counted: kills at random points, tracking outages, bad inputs.

- kill trials: a training (the lecture CNN with dropout, 3 epochs on an MNIST subset) is
  SIGKILLed at a random moment, then rerun; it must end with weights identical to an
  uninterrupted run. Kills that land before the first epoch ends restart from scratch, the
  others resume; both count only if the result is identical.
- outage trials: the tracking server (a real `mlflow server`) stops at a random moment after
  the first epoch, starts again after the training, and the outbox is replayed; a trial
  counts if the run has every epoch's metrics and ends FINISHED.
- bad inputs: every case of tests/integration/test_bad_inputs.py, in process; a case counts
  if the stage raises the one-line error the case expects.

    python benchmarks/reliability.py [--kills 10] [--outages 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' servers and bad-input cases

from tests.servers import TrackingServer  # noqa: E402

TRAIN = [sys.executable, str(ROOT / "pipelines" / "train.py"), "run=mnist_cnn",
         "train.mnist_cnn.register_model=false", "train.mnist_cnn.trainer.accelerator=cpu",
         "train.mnist_cnn.trainer.max_epochs=3", "train.mnist_cnn.trainer.batch_size=32",
         "train.mnist_cnn.model.dropout=0.3"]


def training(tmp: Path, out: str) -> list[str]:
    return [*TRAIN, f"paths.prepared={tmp / 'prepared'}",
            *(f"paths.{k}={tmp / out / k}" for k in ("models", "metrics", "plots"))]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return torch.load(folder / "models/mnist_cnn/model.ckpt", weights_only=True)["state_dict"]


def kill_trials(tmp: Path, count: int, rng: random.Random, env: dict[str, str]) -> tuple[int, int]:
    """(identical results, of which resumed) over `count` kills at random moments."""
    start = time.perf_counter()
    subprocess.run(training(tmp, "whole"), env=env, check=True, capture_output=True)
    duration = time.perf_counter() - start
    reference = weights(tmp / "whole")
    identical = resumed = 0
    for trial in range(count):
        out = f"kill{trial}"
        proc = subprocess.Popen(training(tmp, out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 0.9) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again = subprocess.run(training(tmp, out), env=env, capture_output=True, text=True)
        resumed += "resuming after epoch" in again.stdout
        result = weights(tmp / out) if again.returncode == 0 else {}
        identical += bool(result) and all(torch.equal(reference[k], result[k]) for k in reference)
    return identical, resumed


def outage_trials(tmp: Path, count: int, rng: random.Random, env: dict[str, str]) -> int:
    from mlflow.tracking import MlflowClient

    whole = 0
    for trial in range(count):
        server = TrackingServer(tmp / f"server{trial}")
        server.folder.mkdir()
        server.start()
        trial_env = {**env, "MLFLOW_TRACKING_URI": server.uri,
                     "CNNLAB_STATE_DIR": str(tmp / f"state{trial}")}
        proc = subprocess.Popen(training(tmp, f"outage{trial}"), env=trial_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not list((tmp / f"state{trial}").glob("resume/*/meta.json")):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 2.0))
        server.stop()
        proc.wait()
        server.start()
        subprocess.run([sys.executable, "-m", "cnnlab.core.tracking", "replay"], env=trial_env,
                       capture_output=True)
        client = MlflowClient(server.uri)
        runs = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id])
        whole += (proc.returncode == 0 and len(runs) == 1 and runs[0].info.status == "FINISHED"
                  and all([m.step for m in client.get_metric_history(runs[0].info.run_id, k)]
                          == [1, 2, 3] for k in ("train_loss", "val_acc", "seconds")))
        server.stop()
    return whole


def bad_input_trials() -> tuple[int, int]:
    """(clean errors, cases) over the bad-input cases of the test suite."""
    import pytest

    counter = _Counter()
    pytest.main(["-q", "-p", "no:cacheprovider", "--no-header",
                 str(ROOT / "tests" / "integration" / "test_bad_inputs.py")], plugins=[counter])
    return counter.passed, counter.total


class _Counter:
    def __init__(self) -> None:
        self.passed = self.total = 0

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "call":
            self.total += 1
            self.passed += report.passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--outages", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-reliability-"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "CNNLAB_STATE_DIR": str(tmp / "state")}
    subprocess.run([sys.executable, str(ROOT / "pipelines" / "prepare_mnist.py"),
                    "data.mnist.max_train=3000", "data.mnist.max_test=1000",
                    f"paths.prepared={tmp / 'prepared'}", f"paths.metrics={tmp / 'm'}"],
                   env=env, check=True, capture_output=True)
    identical, resumed = kill_trials(tmp, args.kills, rng, env)
    outages = outage_trials(tmp, args.outages, rng, env)
    clean, cases = bad_input_trials()
    print("| trials | count | good | what counts as good |\n|---|---|---|---|")
    print(f"| SIGKILL at a random moment, then rerun | {args.kills} | {identical} | weights "
          f"identical to an uninterrupted run ({resumed} resumed, {args.kills - resumed} "
          "restarted) |")
    print(f"| tracking server down mid-run, replayed | {args.outages} | {outages} | every "
          "epoch's metrics, run FINISHED |")
    print(f"| bad inputs | {cases} | {clean} | one-line error naming the input, outputs "
          "untouched |")


if __name__ == "__main__":
    main()
