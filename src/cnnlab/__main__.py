"""`python -m cnnlab <command> ...`: the user-facing commands that are not DVC stages.

Each command is a module with `add_arguments(parser)` and `run(args) -> int`; it is registered
by one line in COMMANDS and imported only when chosen, so `--help` stays fast. A CnnlabError
prints as one line and exits with code 2, as in the stages.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {  # name -> (module, one-line help)
    "compare": ("cnnlab.compare.cli", "what changed between two revisions, experiments or runs"),
    "cluster": ("cnnlab.cluster.cli", "start, stop or check this machine's SLURM cluster (make cluster)"),
    "plots-page": ("cnnlab.plots_page", "write DVC's plots page template, vega inline (make install)"),
    "predict": ("cnnlab.predict.cli", "top-3 classes for your own images, recordings or review lines"),
    "search-best": ("cnnlab.search.cli", "write a search's best trial as a new experiment file"),
    "services": ("cnnlab.services.cli", "start, stop or check the shared stack (make services)"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen command, return its exit code."""
    from cnnlab.core.errors import CnnlabError

    parser = argparse.ArgumentParser(prog="python -m cnnlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (module, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_).set_defaults(_module=module)
    argv = sys.argv[1:] if argv is None else argv
    first, _ = parser.parse_known_args(argv[:1] or argv)  # which command, before importing it
    command = importlib.import_module(first._module)
    command_parser = argparse.ArgumentParser(prog=f"python -m cnnlab {first.command}",
                                             description=(command.__doc__ or "").split("\n\n")[0])
    command.add_arguments(command_parser)
    args = command_parser.parse_args(argv[1:])
    try:
        return int(command.run(args) or 0)
    except CnnlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
