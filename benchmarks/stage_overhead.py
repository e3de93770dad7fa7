"""The time a user waits that is not science, old main against new, side by side in one run.

For each project tree (old: a git worktree of the base commit, new: this one) it measures:
- a full `dvc repro` from a fresh clone (`--full`): its wall time, and the gaps between one
  stage's MLflow run ending and the next one starting (each tree logs to its own mlflow.db);
- `dvc status` and a no-op `dvc repro`, once the pipeline is up to date (median of `--repeat`);
- `python pipelines/params_report.py` run directly (science 0.6 s; the rest is start-up);
- `dvc exp run -S <override>` (`--exp`): which stages ran, and how long it took.

    git worktree add /tmp/cnnlab-old <base commit>
    python benchmarks/stage_overhead.py --old /tmp/cnnlab-old --full --exp

Both trees run with this venv's Python and DVC. Old main's requirements had no
ruamel.yaml.clib, so its commands run with that C parser hidden (a `_ruamel_yaml` that fails to
import on PYTHONPATH), as a fresh install of old main has it. Run on an idle machine: two jobs on
2 cores distort every figure. Results: benchmarks/results/stage_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results"
EXP_OVERRIDE = "train.audio_dense.trainer.lr=0.001"


def environment(tree: Path, hide_clib: bool) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tree / 'mlflow.db'}", "PYTHONPATH": str(tree / "src"),
           "DVC_SITE_CACHE_DIR": str(tree / ".dvc" / "tmp" / "site-cache"),
           "CNNLAB_STATE_DIR": str(tree / ".cnnlab"), "PYTHONDONTWRITEBYTECODE": "1"}
    if hide_clib:
        shim = Path(tempfile.gettempdir()) / "cnnlab-no-clib"
        shim.mkdir(exist_ok=True)
        write_no_clib(shim)
        env["PYTHONPATH"] = f"{shim}:{env['PYTHONPATH']}"
    return env


def write_no_clib(folder: Path) -> None:
    """A `_ruamel_yaml` module in `folder` that fails to import, as on old main's install."""
    (folder / "_ruamel_yaml.py").write_text('raise ImportError("hidden: old main had no clib")\n')


def timed(cmd: list[str], tree: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} in {tree} failed ({done.returncode}): "
                         f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return seconds, done.stdout


def median_of(cmd: list[str], tree: Path, env: dict[str, str], repeat: int) -> float:
    return statistics.median(timed(cmd, tree, env)[0] for _ in range(repeat))


def run_windows(db: Path, since_ms: int) -> list[tuple[int, int, str]]:
    """(start, end, name) of every finished top-level run started after `since_ms`: one per
    stage (a stage's nested runs, if any, have a parent)."""
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT start_time, end_time, name FROM runs WHERE start_time >= ? AND end_time IS "
            "NOT NULL AND run_uuid NOT IN (SELECT run_uuid FROM tags WHERE key = "
            "'mlflow.parentRunId') ORDER BY start_time", (since_ms,)).fetchall()
    return [(int(s), int(e), str(n)) for s, e, n in rows]


def gaps_of(windows: list[tuple[int, int, str]]) -> list[float]:
    """Seconds from one run's end to the next run's start (DVC runs stages one by one)."""
    return [(b[0] - a[1]) / 1000 for a, b in zip(windows, windows[1:], strict=False)]


def full_repro(tree: Path, env: dict[str, str]) -> dict[str, float]:
    for folder in ("data", "models", "reports", ".dvc/cache", ".dvc/tmp", ".cnnlab"):
        shutil.rmtree(tree / folder, ignore_errors=True)
    (tree / "mlflow.db").unlink(missing_ok=True)
    since = int(time.time() * 1000)
    wall, _ = timed(["dvc", "repro"], tree, env)
    windows = run_windows(tree / "mlflow.db", since)
    gaps = gaps_of(windows)
    return {"repro_s": wall, "runs": len(windows), "runs_s": sum(e - s for s, e, _ in windows) / 1000,
            "gap_median_s": statistics.median(gaps), "gap_total_s": sum(gaps),
            "gap_max_s": max(gaps)}


def experiment(tree: Path, env: dict[str, str]) -> dict[str, object]:
    """`dvc exp run -S EXP_OVERRIDE`: the stages it ran (each one MLflow run) and its time."""
    since = int(time.time() * 1000)
    wall, _ = timed(["dvc", "exp", "run", "-S", EXP_OVERRIDE], tree, env)
    return {"exp_run_s": wall, "exp_stages": [n for _, _, n in run_windows(tree / "mlflow.db", since)]}


def measure(tree: Path, hide_clib: bool, args: argparse.Namespace) -> dict[str, object]:
    env = environment(tree, hide_clib)
    result: dict[str, object] = {"tree": str(tree)}
    if args.full:
        result |= full_repro(tree, env)
    if args.repeat:
        result["dvc_status_s"] = median_of(["dvc", "status"], tree, env, args.repeat)
        result["noop_repro_s"] = median_of(["dvc", "repro"], tree, env, args.repeat)
        result["params_report_s"] = median_of(
            [sys.executable, "pipelines/params_report.py", "--config-dir", ".", "--config-name",
             "params"], tree, env, args.repeat)
    if args.exp:
        result |= experiment(tree, env)
    return result


ROWS = [("full dvc repro (s)", "repro_s"), ("median gap between stages (s)", "gap_median_s"),
        ("total gap (s)", "gap_total_s"), ("MLflow runs", "runs"),
        ("dvc status (s)", "dvc_status_s"), ("no-op dvc repro (s)", "noop_repro_s"),
        ("params_report run directly (s)", "params_report_s"),
        (f"dvc exp run -S {EXP_OVERRIDE} (s)", "exp_run_s")]


def table(old: dict[str, object], new: dict[str, object]) -> str:
    lines = ["| measure | old main | new | new / old |", "|---|---|---|---|"]
    for label, key in ROWS:
        if key in old and key in new:
            a, b = float(old[key]), float(new[key])  # type: ignore[arg-type]
            lines.append(f"| {label} | {a:.1f} | {b:.1f} | {b / a:.2f} |" if a else
                         f"| {label} | {a:.1f} | {b:.1f} | |")
    for name in ("old", "new"):
        stages = {"old": old, "new": new}[name].get("exp_stages")
        if stages:
            lines.append(f"\nStages the experiment ran ({name}): {', '.join(map(str, stages))}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="a worktree of old main")
    parser.add_argument("--new", type=Path, default=ROOT)
    parser.add_argument("--full", action="store_true", help="a full dvc repro in each tree first")
    parser.add_argument("--exp", action="store_true", help=f"dvc exp run -S {EXP_OVERRIDE}")
    parser.add_argument("--repeat", type=int, default=3, help="0: skip the status timings")
    args = parser.parse_args()
    for tree in (args.old, args.new):
        if not (tree / "dvc.yaml").is_file():
            raise SystemExit(f"error: {tree}: not a cnnlab tree (no dvc.yaml)")
    old = measure(args.old.resolve(), True, args)
    new = measure(args.new.resolve(), False, args)
    RESULTS.mkdir(exist_ok=True)
    saved = RESULTS / "stage_overhead.json"
    if saved.is_file():  # a later run (say --exp alone) adds to the figures of an earlier one
        before = json.loads(saved.read_text())
        old, new = before.get("old", {}) | old, before.get("new", {}) | new
    saved.write_text(json.dumps({"old": old, "new": new}, indent=2))
    text = table(old, new)
    (RESULTS / "stage_overhead.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
