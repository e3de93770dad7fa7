"""`python -m cnnlab cluster up|down|status [key=value ...]`: start, stop or check the SLURM
cluster of this machine (`make cluster`, `make cluster-stop`).

Settings are conf/cluster.yaml; `key=value` overrides them, e.g. memory_mb=2048.
"""

from __future__ import annotations

import argparse

from cnnlab.cluster import cluster


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="settings of conf/cluster.yaml, e.g. memory_mb=2048")


def run(args: argparse.Namespace) -> int:
    cfg = cluster.load_config(args.overrides)
    if args.action == "status":
        return 0 if cluster.status(cfg) else 1
    if args.action == "down":
        cluster.down(cfg)
        return 0
    cluster.up(cfg)
    print(f"state and logs in {cfg.state_dir}\nuse it: "
          + " ".join(f"export {k}={v}" for k, v in cluster.environment(cfg).items()))
    return 0
