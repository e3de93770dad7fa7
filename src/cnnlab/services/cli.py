"""`python -m cnnlab services up|down|status [key=value ...]`: start, stop or check the shared
stack (`make services`, `make services-stop`, `make services-status`).

Settings are conf/services.yaml; `key=value` overrides them, e.g. mlflow.port=5001.
"""

from __future__ import annotations

import argparse

from cnnlab.core.paths import project_root
from cnnlab.services import stack, tracking_server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="settings of conf/services.yaml, e.g. mlflow.port=5001")


def run(args: argparse.Namespace) -> int:
    cfg = stack.load_config(args.overrides)
    if args.action == "status":
        return 0 if stack.status(cfg) else 1
    if args.action == "down":
        stack.down(cfg)
        return 0
    stack.up(cfg)
    stack.connect_dvc_remote(cfg, project_root())
    print(f"state and logs in {cfg.state_dir}; DVC remote `{cfg.dvc_remote}` connected\n"
          f"log to it ({tracking_server.url(cfg)}) as the pipeline: "
          f"set -a; . {cfg.state_dir}/clients/pipeline.env; set +a\n"
          f"readers: {cfg.state_dir}/clients/reader.env")
    return 0
