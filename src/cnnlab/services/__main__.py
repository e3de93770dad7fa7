"""`python -m cnnlab.services up|down|status [key=value ...]`: the entry point of `make services`,
`make services-stop` and `make services-status`. Errors are one line, exit code 2."""

from __future__ import annotations

import argparse
import sys

from cnnlab.core.errors import CnnlabError
from cnnlab.core.tracking import project_root
from cnnlab.services import stack, tracking_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnlab.services", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="settings of conf/services.yaml, e.g. mlflow.port=5001")
    args = parser.parse_args(argv)
    try:
        cfg = stack.load_config(args.overrides)
        if args.command == "up":
            stack.up(cfg)
            stack.connect_dvc_remote(cfg, project_root())
            print(f"state and logs in {cfg.state_dir}; DVC remote `{cfg.dvc_remote}` connected"
                  f"\nlog to it: export MLFLOW_TRACKING_URI={tracking_server.url(cfg)}")
        elif args.command == "down":
            stack.down(cfg)
        else:
            return 0 if stack.status(cfg) else 1
    except CnnlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
