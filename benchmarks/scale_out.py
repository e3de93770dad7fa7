"""Scale-out on this machine, side by side in one run: a sweep of 4 jobs one after another
against Hydra's joblib launcher with 2 jobs at once (each job gets cores / 2 torch threads),
and one training process against 2 DDP processes (gloo on the CPU).

Every case runs the real stage script on the lecture CNN over the same prepared subset of
MNIST, with tracking in a throwaway store. Time it on an otherwise idle machine.

    python benchmarks/scale_out.py [--train 12000] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN = [sys.executable, str(ROOT / "pipelines" / "train.py")]


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=12000, help="training digits")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-scale-"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}
    subprocess.run([sys.executable, str(ROOT / "pipelines" / "prepare_mnist.py"),
                    f"data.mnist.max_train={args.train}", "data.mnist.max_test=2000",
                    f"paths.prepared={tmp / 'prepared'}", f"paths.metrics={tmp / 'm'}"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    common = ["run=mnist_cnn", f"paths.prepared={tmp / 'prepared'}",
              "train.mnist_cnn.register_model=false", "train.mnist_cnn.trainer.accelerator=cpu",
              f"train.mnist_cnn.trainer.max_epochs={args.epochs}"]
    seeds = "train.mnist_cnn.seed=1,2,3,4"
    rows = []
    sequential = timed([*TRAIN, "-m", *common, seeds, f"hydra.sweep.dir={tmp / 's1'}"], env)
    parallel = timed([*TRAIN, "-m", *common, seeds, "hydra/launcher=parallel",
                      "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp / 's2'}"], env)
    rows.append(("4-job sweep", "one after another", sequential, "joblib, 2 at once", parallel))

    def single(devices: int) -> tuple[float, float]:
        out = tmp / f"ddp{devices}"
        extra = ["train.mnist_cnn.trainer.strategy=ddp"] if devices > 1 else []
        wall = timed([*TRAIN, *common, f"train.mnist_cnn.trainer.devices={devices}", *extra,
                      *(f"paths.{k}={out / k}" for k in ("models", "metrics", "plots"))], env)
        metrics = json.loads((out / "metrics" / "mnist" / "mnist_cnn.json").read_text())
        return wall, metrics["seconds_per_epoch"]

    (one_wall, one_epoch), (two_wall, two_epoch) = single(1), single(2)
    rows.append(("training, wall", "1 process", one_wall, "2 DDP processes", two_wall))
    rows.append(("training, s/epoch", "1 process", one_epoch, "2 DDP processes", two_epoch))

    print(f"{os.cpu_count()} cores, {args.train} training digits, {args.epochs} epoch(s)")
    print("| case | baseline | s | scaled out | s | speed-up |\n|---|---|---|---|---|---|")
    for case, base, base_s, other, other_s in rows:
        print(f"| {case} | {base} | {base_s:.1f} | {other} | {other_s:.1f} | "
              f"{base_s / other_s:.2f}x |")


if __name__ == "__main__":
    main()
