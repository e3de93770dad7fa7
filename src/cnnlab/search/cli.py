"""Write a search's best trial as a new experiment file in conf/experiment/.

`python -m cnnlab search-best <study>` reads the study from its storage (by default the one the
search used, beside mlflow.db) and writes conf/experiment/<study>_best.yaml: the study's
experiment with the winning values. `--add-default` also adds its line to conf/config.yaml, so
that `make params` and `dvc repro` train it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.core.paths import project_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", help="the study's name (hydra.sweeper.study_name)")
    parser.add_argument("--name", help="the new experiment's name (default: <study>_best)")
    parser.add_argument("--conf", type=Path, help="the conf/ folder (default: the project's)")
    parser.add_argument("--storage", help="the study's RDB URI (default: optuna.db beside mlflow.db)")
    parser.add_argument("--add-default", action="store_true",
                        help="add the experiment's line to the defaults of conf/config.yaml")
    parser.add_argument("--force", action="store_true", help="replace an existing file")


def run(args: argparse.Namespace) -> int:
    from cnnlab.search.storage import load_study
    from cnnlab.search.winner import write_winner

    conf = args.conf or project_root() / "conf"
    winner = write_winner(load_study(args.study, args.storage), conf, args.name,
                          args.add_default, args.force)
    print(f"wrote {winner.path}")
    if winner.added:
        print(f"added `{winner.defaults_line}` to {conf / 'config.yaml'}; now: make params && dvc repro")
    else:
        print(f"to train it with `dvc repro`, add `{winner.defaults_line}` to the defaults of "
              f"{conf / 'config.yaml'} (or rerun with --add-default), then `make params`")
    return 0
