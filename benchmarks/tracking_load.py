"""Tracking under load, side by side in one run: N client processes at once, each logging S
metric steps through cnnlab's tracking layer, to the project's kind of SQLite store and to the
shared stack's `mlflow server` (PostgreSQL + S3). Start the stack first: `make services`.

Reports, per store: the runs and steps that arrived (read back), log calls per second over the
wall time of the load, and p50 / p95 latency of one call. Time it on an otherwise idle machine.
With `--client-netns` and `--client-env`, one more row: `--remote-clients` (16) clients on
another host (a network namespace) logging to the exposed stack through TLS and auth, as the
role of the env file (`.cnnlab/services/clients/pipeline.env`).

    python benchmarks/tracking_load.py [--clients 8] [--steps 200] [--server http://127.0.0.1:5000]
        [--client-netns cnt-cli --client-env .cnnlab/services/clients/pipeline.env]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


def client(uri: str, experiment: str, steps: int, start: mp.Barrier, queue: mp.Queue) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = uri
    import mlflow

    from cnnlab.core.tracking import runs, store

    store.configure()
    with store.store_lock(uri):  # as stages do: one process creates the experiment
        mlflow.set_experiment(experiment)
    run = mlflow.start_run()
    start.wait()
    latencies = []
    for step in range(steps):
        began = time.perf_counter()
        runs.log_metrics({"loss": 1.0 / (step + 1), "acc": step / steps}, step=step)
        latencies.append(time.perf_counter() - began)
    mlflow.end_run()
    queue.put((run.info.run_id, latencies, time.perf_counter()))


def load(uri: str, clients: int, steps: int) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    experiment = f"load-{uuid.uuid4().hex[:8]}"
    ctx = mp.get_context("spawn")
    start, queue = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=client, args=(uri, experiment, steps, start, queue))
             for _ in range(clients)]
    for proc in procs:
        proc.start()
    start.wait()
    began = time.perf_counter()
    results = [queue.get(timeout=600) for _ in procs]
    wall = max(done for _, _, done in results) - began
    for proc in procs:
        proc.join()
    store = MlflowClient(uri)
    exp = store.get_experiment_by_name(experiment)
    runs = store.search_runs([exp.experiment_id])
    arrived = sum(len(store.get_metric_history(r.info.run_id, "loss")) for r in runs)
    latencies = sorted(x for _, lat, _ in results for x in lat)
    return {"runs": len(runs), "steps": arrived, "calls_per_s": len(latencies) / wall,
            "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))]}


def from_client_host(netns: str, env_file: Path, clients: int, steps: int) -> dict[str, float]:
    """`load` run on the client host `netns`, with the settings of `env_file` (never argv)."""
    pairs = (line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    env = {**os.environ, **dict(pairs)}
    done = subprocess.run(["ip", "netns", "exec", netns, sys.executable, __file__, "--row",
                           "--clients", str(clients), "--steps", str(steps),
                           "--server", env["MLFLOW_TRACKING_URI"]],
                          env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"error: the load from {netns} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--server", default="http://127.0.0.1:5000")
    parser.add_argument("--client-netns", help="the client host's network namespace")
    parser.add_argument("--client-env", type=Path, help="its role's env file (clients/*.env)")
    parser.add_argument("--remote-clients", type=int, default=16)
    parser.add_argument("--row", action="store_true", help=argparse.SUPPRESS)  # one row as JSON
    args = parser.parse_args()
    if args.row:
        print(json.dumps(load(args.server, args.clients, args.steps)))
        return
    from cnnlab.core.errors import TrackingError
    from cnnlab.core.tracking.store import check_server

    try:
        check_server(args.server)
    except TrackingError:
        raise SystemExit(f"error: no tracking server at {args.server}: start it with "
                         "`make services`, or pass --server") from None
    sqlite = f"sqlite:///{Path(tempfile.mkdtemp(prefix='cnnlab-load-')) / 'mlflow.db'}"
    stores = {"SQLite file (file lock + retries)": sqlite,
              "mlflow server on PostgreSQL": args.server}
    rows = {name: (args.clients, load(uri, args.clients, args.steps))
            for name, uri in stores.items()}
    if args.client_netns and args.client_env:
        rows[f"client host, TLS + auth, {args.remote_clients} clients"] = (
            args.remote_clients, from_client_host(args.client_netns, args.client_env,
                                                  args.remote_clients, args.steps))
    print(f"{args.clients} clients x {args.steps} steps (2 metrics per call), unless a row "
          "says otherwise; steps arrived / sent:")
    print(f"{'store':<36} {'runs':>5} {'steps':>11} {'calls/s':>8} {'p50 ms':>7} {'p95 ms':>7}")
    for name, (clients, r) in rows.items():
        sent = clients * args.steps
        print(f"{name:<36} {r['runs']:>5} {r['steps']:>5}/{sent:<5} {r['calls_per_s']:>8.0f} "
              f"{r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f}")
    ratio = rows[next(iter(rows))][1]["calls_per_s"] / rows[list(rows)[1]][1]["calls_per_s"]
    print(f"throughput, SQLite / server: {ratio:.2f}x")


if __name__ == "__main__":
    main()
