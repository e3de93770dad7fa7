"""`python -m cnnlab cluster up|down|status [key=value ...]`: start, stop or check the SLURM
cluster of this machine (`make cluster`, `make cluster-stop`).

Settings are conf/cluster.yaml; `key=value` overrides them, e.g. memory_mb=2048.
"""

from __future__ import annotations

import argparse

from omegaconf import DictConfig

from cnnlab.cluster import cluster


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=sorted(ACTIONS))
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="settings of conf/cluster.yaml, e.g. memory_mb=2048")


def up(cfg: DictConfig) -> bool:
    cluster.up(cfg)
    exports = " ".join(f"export {k}={v}" for k, v in cluster.environment(cfg).items())
    print(f"state and logs in {cfg.state_dir}\nuse it: {exports}")
    return True


ACTIONS = {"up": up, "down": lambda cfg: cluster.down(cfg) or True, "status": cluster.status}


def run(args: argparse.Namespace) -> int:
    """0 when the action succeeded (status: when every node answers), else 1."""
    return 0 if ACTIONS[args.action](cluster.load_config(args.overrides)) else 1
