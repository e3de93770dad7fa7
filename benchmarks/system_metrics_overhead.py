"""What MLflow's system metrics cost a training epoch: the train stage with sampling off, at
the configured interval, and at a busy 1 s, side by side.

Each run is `python pipelines/train.py run=<experiment>` in its own process (as DVC runs it),
same seed, same data, its own outputs, one MLflow store for all; the order of the settings
turns each round, so that a drift of the machine falls on all of them. The epoch time is the
`seconds` column of the run's history (plots/<dataset>/<experiment>.csv). It also times the
sampler's own work (one sample, and logging it to a SQLite store) in this process, which
bounds the overhead however noisy the machine is.

    python benchmarks/system_metrics_overhead.py [--rounds 3] [--experiment mnist_cnn]
        [--threads 1] [--limit-train-batches 0.25]

One torch thread and a quarter of an epoch by default: on a busy 2-core machine two threads
that wait for each other's cores make epoch times swing far more than any sampler could.
Run on an idle machine. Results: benchmarks/results/system_metrics_overhead.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def configured_interval() -> float:
    return float(OmegaConf.load(ROOT / "conf" / "config.yaml").tracking.system_metrics_interval)


def train(tmp: Path, label: str, args: argparse.Namespace, interval: float,
          env: dict[str, str]) -> list[float]:
    """One training in its own process; returns its epochs' seconds."""
    out, experiment = tmp / label, args.experiment
    cmd = [sys.executable, str(ROOT / "pipelines" / "train.py"), f"run={experiment}",
           f"paths.prepared={args.data}", f"train.{experiment}.register_model=false",
           f"train.{experiment}.trainer.threads={args.threads}",
           f"train.{experiment}.trainer.limit_train_batches={args.limit_train_batches}",
           f"tracking.system_metrics_interval={interval}",
           *(f"paths.{k}={out / k}" for k in ("models", "metrics", "plots"))]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: {label} failed: {done.stderr.strip().splitlines()[-1:]}")
    (history,) = (out / "plots").rglob(f"{experiment}.csv")
    with history.open(newline="") as f:
        return [float(row["seconds"]) for row in csv.DictReader(f)]


def sampler_cost(uri: str, samples: int = 20) -> tuple[float, float]:
    """Seconds one sample takes to collect, and to log to a run of the store at `uri`."""
    import mlflow
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    import cnnlab.core.tracking  # noqa: F401 - MLflow's settings and log levels, as in a stage

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as run:
        sampler = SystemMetricsMonitor(run.info.run_id)
        start = time.perf_counter()
        for _ in range(samples):
            sampler.collect_metrics()
        collect = (time.perf_counter() - start) / samples
        start = time.perf_counter()
        for _ in range(samples):
            sampler.publish_metrics(sampler.aggregate_metrics())
            sampler.mlflow_logger.flush()
        publish = (time.perf_counter() - start) / samples
    return collect, publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--experiment", default="mnist_cnn")
    parser.add_argument("--data", default=str(ROOT / "data" / "prepared"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit-train-batches", type=float, default=0.25)
    args = parser.parse_args()
    settings = {"off": 0.0, f"every {configured_interval():g} s": configured_interval(),
                "every 1 s": 1.0}
    epochs: dict[str, list[list[float]]] = {label: [] for label in settings}  # per round
    with tempfile.TemporaryDirectory(prefix="cnnlab-sysmetrics-") as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "CNNLAB_STATE_DIR": str(Path(tmp) / "state"),
               "PYTHONPATH": str(ROOT / "src")}
        labels = list(settings)
        for r in range(args.rounds):
            for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                seconds = train(Path(tmp), f"{label}-{r}".replace(" ", "_"), args,
                                settings[label], env)
                epochs[label].append(seconds)
                print(f"round {r + 1} {label:12s} epochs {', '.join(f'{s:.2f}' for s in seconds)} s",
                      flush=True)
        collect, publish = sampler_cost(uri)
    off = epochs["off"]
    lines = [f"# System metrics overhead on a {args.experiment} epoch",
             f"{args.rounds} rounds, {sum(map(len, off))} epochs per setting, one process per "
             f"training, {args.threads} torch thread(s), limit_train_batches="
             f"{args.limit_train_batches:g}, os.cpu_count()={os.cpu_count()}, load average "
             f"{os.getloadavg()[0]:.1f} at the end.", "",
             "Ratio: an epoch's time over the same epoch's with sampling off, in the same "
             "round (epochs differ: the first is slower), median and range over the pairs.", "",
             "| sampling | median epoch (s) | min-max (s) | ratio to off: median | range |",
             "|---|---|---|---|---|"]
    for label, rounds in epochs.items():
        values = [s for seconds in rounds for s in seconds]
        ratios = [s / o for seconds, base in zip(rounds, off, strict=True)
                  for s, o in zip(seconds, base, strict=True)]
        lines.append(f"| {label} | {statistics.median(values):.3f} | {min(values):.3f}-"
                     f"{max(values):.3f} | {statistics.median(ratios):.4f} | "
                     f"{min(ratios):.3f}-{max(ratios):.3f} |")
    lines += ["", f"The sampler's own work: {collect * 1e3:.2f} ms to collect a sample, "
              f"{publish * 1e3:.2f} ms to log it to SQLite: "
              f"{(collect + publish) / configured_interval():.4%} of the time at "
              f"{configured_interval():g} s, {collect + publish:.4%} at 1 s."]
    report = "\n".join(lines) + "\n"
    print(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "system_metrics_overhead.md").write_text(report)


if __name__ == "__main__":
    main()
