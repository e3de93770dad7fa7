"""`python -m cnnlab services up|down|status [key=value ...]`: start, stop or check the shared
stack (`make services`, `make services-stop`, `make services-status`); `services backup <dir>`
and `services restore <dir>` copy its data out, and rebuild an empty stack from such a copy.

Settings are conf/services.yaml; `key=value` overrides them, e.g. mlflow.port=5001.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.core.errors import ServiceError
from cnnlab.core.paths import project_root
from cnnlab.services import stack, tracking_server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status", "backup", "restore"])
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="settings of conf/services.yaml, e.g. mlflow.port=5001; backup and "
                             "restore take the backup folder first")


def run(args: argparse.Namespace) -> int:
    if args.action in ("backup", "restore"):
        return _copy(args)
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


def _copy(args: argparse.Namespace) -> int:
    from cnnlab.services import backup

    if not args.overrides or "=" in args.overrides[0]:
        raise ServiceError(f"services {args.action}: name the backup folder first, e.g. "
                           f"`python -m cnnlab services {args.action} /backups/stack-1`")
    folder, cfg = Path(args.overrides[0]).resolve(), stack.load_config(args.overrides[1:])
    if args.action == "backup":
        manifest = backup.backup(cfg, folder)
        print(f"backed up {len(manifest['databases'])} databases and "
              f"{sum(n.startswith('objects/') for n in manifest['files'])} objects to {folder}")
    else:
        backup.restore(cfg, folder)
        print(f"restored the stack in {cfg.state_dir} from {folder}")
    return 0
