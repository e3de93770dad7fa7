"""`python -m cnnlab compare [A] [B]`: what changed from A to B, and which claims now read differently.

A and B are git revisions, DVC experiment names, MLflow run ids, or `workspace`; the default
is HEAD against the workspace, so that after `dvc exp run -S ...` the page shows the
experiment against its baseline. It writes compare.md, compare.html, compare.json and the curves
figure to --out, and with --md also prints the markdown (the body of a pull-request comment).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cnnlab.compare.changes import compare
from cnnlab.compare.page import as_json, curves_png, render_html, render_markdown
from cnnlab.compare.sides import WORKSPACE, load
from cnnlab.core.io import atomic_path, write_json, write_text
from cnnlab.core.paths import project_root

CURVES = "compare_curves.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", nargs="?", default="HEAD", help="the old side (default HEAD)")
    parser.add_argument("b", nargs="?", default=WORKSPACE, help="the new side (default: the "
                        "workspace)")
    parser.add_argument("--out", type=Path, default=Path("outputs/compare"),
                        help="folder for compare.md, compare.html and the curves (default "
                             "outputs/compare)")
    parser.add_argument("--md", action="store_true", help="also print the markdown page")


def run(args: argparse.Namespace) -> int:
    root = project_root()
    a, b = load(args.a, root), load(args.b, root)
    changes = compare(a, b)
    curves = curves_png(changes, a, b)
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    out.mkdir(parents=True, exist_ok=True)
    if curves:
        with atomic_path(out / CURVES) as tmp:
            tmp.write_bytes(curves)
    write_text(out / "compare.md", render_markdown(changes, a, b, CURVES if curves else None))
    write_text(out / "compare.html", render_html(changes, a, b, curves))
    write_json(out / "compare.json", as_json(changes, a, b))
    if changes.environment_warning:
        print(changes.environment_warning, file=sys.stderr)
    if args.md:  # the figure's path as seen from here, where the comment is made
        shown = os.path.relpath(out / CURVES) if curves else None
        print(render_markdown(changes, a, b, shown), end="")
    else:
        print(f"compare: {len(changes.params)} params, {len(changes.metrics)} metrics, "
              f"{len(changes.claims)} claims differ -> {out / 'compare.html'}")
    return 0
