"""The test suite's wall time, old main against new, side by side in one run.

Each tree's suite runs as the README runs it (`CI=true pytest -q`, FSDD beside the repository),
one after the other, with `--durations=0`. The new suite also holds tests for behaviour that old
main never had; `--since <commit>` splits the new suite's time into the tests that exist at
that commit (the suite that covers old main's behaviour) and the tests added after it.

    git worktree add /work/cnnlab-old <base commit>
    python benchmarks/test_suite.py --old /work/cnnlab-old --since <commit>

Both trees use this venv. The old tree's code comes first on the path and this tree's `src`
is taken off it (the venv's editable install points here), and old main's commands run with
ruamel's C parser hidden, as a fresh install of old main had it (see stage_overhead.py). Run
on an idle machine. Results: benchmarks/results/test_suite.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stage_overhead import write_no_clib  # noqa: E402 - the sibling benchmark's shim

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DURATION = re.compile(r"\s*([\d.]+)s (?:setup|call|teardown)\s+(\S+)")
SUMMARY = re.compile(r"^=* ?(\d+ (?:passed|failed|skipped|errors?)\b.*?) in ([\d.]+)s",
                     re.MULTILINE)


def environment(tree: Path, shim: Path | None) -> dict[str, str]:
    """The README's test environment; with `shim` (the old tree), its code on the path."""
    env = {**os.environ, "CI": "true", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "CNNLAB_FSDD_DIR": os.environ.get("CNNLAB_FSDD_DIR",
                                             str(ROOT.parent / "shared" / "datasets" / "fsdd"))}
    if shim is None:
        return env
    write_no_clib(shim)
    (shim / "sitecustomize.py").write_text(  # after site's .pth files: the new tree off the path
        f"import sys\nsys.path[:] = [p for p in sys.path if p != {str(ROOT / 'src')!r}]\n")
    env["PYTHONPATH"] = f"{shim}:{tree / 'src'}"
    return env


def run_suite(tree: Path, is_new: bool, log: Path) -> None:
    """The suite's output, with its durations, to `log`."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-old-tree-") as shim:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "--durations=0"], cwd=tree,
                              env=environment(tree, None if is_new else Path(shim)),
                              capture_output=True, text=True)
    log.write_text(done.stdout + done.stderr)


def read_log(log: Path) -> dict[str, object]:
    """pytest's own summary and wall time, and every test's durations, from a saved run."""
    text = log.read_text()
    summary = SUMMARY.findall(text)
    if not summary:
        raise SystemExit(f"error: {log}: no pytest summary line (the suite did not finish)")
    durations = [(float(s), node) for s, node in DURATION.findall(text)]
    return {"summary": summary[-1][0], "wall_s": float(summary[-1][1]), "durations": durations}


def tests_at(commit: str) -> set[str]:
    """`file::function` of every test function in tests/ at `commit`."""
    found = subprocess.run(["git", "grep", "-n", "-E", r"^(async )?def test_", commit, "--",
                            "tests/*.py"], cwd=ROOT, capture_output=True, text=True)
    if found.returncode not in (0, 1):  # 1: no match
        raise SystemExit(f"error: --since {commit}: {found.stderr.strip().splitlines()[-1]}")
    return {re.sub(r"^[^:]+:([^:]+):\d+:(?:async )?def (test_\w+).*", r"\1::\2", line)
            for line in found.stdout.splitlines()}


def by_folder(durations: list[tuple[float, str]]) -> dict[str, float]:
    total: dict[str, float] = collections.Counter()
    for seconds, node in durations:
        total[node.split("/")[1]] += seconds
    return {k: round(v, 1) for k, v in sorted(total.items(), key=lambda kv: -kv[1])}


def split(durations: list[tuple[float, str]], kept: set[str]) -> dict[str, float]:
    total = {"kept": 0.0, "added": 0.0}
    for seconds, node in durations:
        total["kept" if node.split("[")[0] in kept else "added"] += seconds
    return {k: round(v, 1) for k, v in total.items()}


def table(old: dict, new: dict, since: str | None) -> str:
    rows = [("wall time of the suite (s)", old["wall_s"], new["wall_s"]),
            *((f"{folder} (s, durations)", old["folders"].get(folder, 0.0), seconds)
              for folder, seconds in new["folders"].items())]
    if since:
        rows.append((f"tests that exist at {since} (s, durations)", old["folders_total"],
                     new["split"]["kept"]))
        rows.append((f"tests added after {since} (s, durations)", 0.0, new["split"]["added"]))
    lines = ["| measure | old main | new | new / old |", "|---|---|---|---|"]
    for name, a, b in rows:
        lines.append(f"| {name} | {a} | {b} | {b / a:.2f} |" if a else f"| {name} | {a} | {b} | |")
    lines += ["", f"old: {old['summary']}; new: {new['summary']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="a worktree of old main")
    parser.add_argument("--since", help="split the new suite at this commit's tests")
    parser.add_argument("--reuse", action="store_true", help="only read the logs of a last run")
    args = parser.parse_args()
    if not (args.old / "tests").is_dir():
        raise SystemExit(f"error: --old {args.old}: not a worktree of the project (no tests/)")
    RESULTS.mkdir(exist_ok=True)
    logs = {"old": RESULTS / "test_suite-old.log", "new": RESULTS / "test_suite-new.log"}
    if not args.reuse:
        run_suite(args.old.resolve(), False, logs["old"])
        run_suite(ROOT, True, logs["new"])
    results = {side: read_log(log) for side, log in logs.items()}
    for side in results.values():
        side["folders"] = by_folder(side["durations"])
        side["folders_total"] = round(sum(s for s, _ in side["durations"]), 1)
    if args.since:
        results["new"]["split"] = split(results["new"]["durations"], tests_at(args.since))
    text = table(results["old"], results["new"], args.since)
    for side in results.values():
        del side["durations"]  # in the logs
    (RESULTS / "test_suite.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "test_suite.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
