"""SLURM on this machine, side by side in one run: a 4-point sweep one after another locally
against the same sweep as SLURM jobs (2 nodes of 1 CPU: 2 at once); one training as 2-node
DDP (`srun --nodes=2`, gloo across the namespaces) against 1 process; and the time from the
requeue signal (SIGUSR1) to the resumed job's next epoch.

Needs the cluster (`make cluster`) and a tracking server the nodes reach, e.g. the stack on
the bridge: `python -m cnnlab services up host=10.77.0.1`, then
MLFLOW_TRACKING_URI=http://10.77.0.1:5000. On 2 cores expect no speed-up: the figures are the
overhead of the scheduler, of process start-up on the nodes, and of the network.

    python benchmarks/cluster.py [--train 4000] [--epochs 1]
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

from cnnlab.cluster.cluster import environment, load_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_out import ROOT, TRAIN, timed  # noqa: E402 - the sibling benchmark's helpers

SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug",
         "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=30"]


def outputs(folder: Path) -> list[str]:
    return [f"paths.{k}={folder / k}" for k in ("models", "metrics", "plots")]


def fit_seconds(folder: Path) -> float:
    return json.loads((folder / "metrics" / "mnist" / "mnist_cnn.json").read_text())["fit_seconds"]


def requeue_delay(env: dict[str, str], common: list[str], tmp: Path) -> tuple[float, float]:
    """(seconds from SIGUSR1 to the resumed job's next epoch, Slurm's requeue hold included;
    the hold Slurm set, in seconds: the cluster's cred_expire_s)."""
    state = tmp / "state"
    env = {**env, "CNNLAB_STATE_DIR": str(state)}
    job = subprocess.run(["sbatch", "--parsable", "--nodes=1", f"--output={tmp / 'rq.log'}",
                          str(ROOT / "conf" / "slurm" / "train.sbatch"), *common,
                          "train.mnist_cnn.trainer.max_epochs=4", *outputs(tmp / "rq")],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True
                         ).stdout.strip()

    def epochs_done() -> int:
        metas = list(state.glob("resume/*/meta.json"))
        return json.loads(metas[0].read_text())["epochs_done"] if metas else 0

    while epochs_done() < 1:
        time.sleep(0.05)
    signalled = time.perf_counter()
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True)
    while "JobState=PENDING" not in (shown := subprocess.run(
            ["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True
            ).stdout):
        time.sleep(0.1)
    begin = shown.split("StartTime=")[1].split()[0]
    hold = time.mktime(time.strptime(begin, "%Y-%m-%dT%H:%M:%S")) - time.time()
    saved = epochs_done()
    while epochs_done() <= saved:
        time.sleep(0.05)
    return time.perf_counter() - signalled, hold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=4000, help="training digits")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    if not os.environ.get("MLFLOW_TRACKING_URI", "").startswith("http"):
        raise SystemExit("error: MLFLOW_TRACKING_URI: set it to a tracking server the nodes "
                         "reach (see this script's docstring)")
    (ROOT / ".cnnlab").mkdir(exist_ok=True)  # on the filesystem every node shares
    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-cluster-bench-", dir=ROOT / ".cnnlab"))
    env = {**os.environ, **environment(load_config()), "CNNLAB_STATE_DIR": str(tmp / "st")}
    subprocess.run([sys.executable, str(ROOT / "pipelines" / "prepare_mnist.py"),
                    f"data.mnist.max_train={args.train}", "data.mnist.max_test=1000",
                    f"paths.prepared={tmp / 'prepared'}", f"paths.metrics={tmp / 'm'}"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    common = [f"paths.prepared={tmp / 'prepared'}", "train.mnist_cnn.register_model=false",
              "train.mnist_cnn.trainer.accelerator=cpu", "train.mnist_cnn.trainer.threads=1",
              f"train.mnist_cnn.trainer.max_epochs={args.epochs}"]
    seeds = ["run=mnist_cnn", *common, "train.mnist_cnn.seed=1,2,3,4"]
    local = timed([*TRAIN, "-m", *seeds, f"hydra.sweep.dir={tmp / 's1'}"], env)
    slurm = timed([*TRAIN, "-m", *seeds, *SLURM, f"hydra.sweep.dir={tmp / 's2'}"], env)
    one = timed([*TRAIN, "run=mnist_cnn", *common, *outputs(tmp / "one")], env)
    two = timed(["srun", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1", "--mem=1G",
                 *TRAIN, "run=mnist_cnn", *common, "train.mnist_cnn.trainer.num_nodes=2",
                 "train.mnist_cnn.trainer.strategy=ddp", *outputs(tmp / "two")], env)
    delay, hold = requeue_delay(env, common[:-1], tmp)  # the job script names the run
    print(f"| case | A | s | B | s |\n|---|---|---:|---|---:|\n"
          f"| 4-point sweep, {args.epochs} epoch(s) | local, one after another | {local:.1f} "
          f"| SLURM jobs, 2 nodes x 1 CPU | {slurm:.1f} |\n"
          f"| one training (wall) | 1 process | {one:.1f} | 2-node DDP (srun, gloo) | {two:.1f} |\n"
          f"| one training (fit only) | 1 process | {fit_seconds(tmp / 'one'):.1f} "
          f"| 2-node DDP | {fit_seconds(tmp / 'two'):.1f} |\n"
          f"| requeue | SIGUSR1 to the resumed job's next epoch (hold included) | {delay:.1f} "
          f"| Slurm's own requeue hold (BeginTime) | {hold:.0f} |")


if __name__ == "__main__":
    main()
