"""A search's trials as a small table: the evidence of a study, to commit beside its result.

    python benchmarks/study_trials.py mnist_cnn_recipe_2ep [--storage URI] [--sweep-dir DIR]
        [--out benchmarks/results]

Reads the study from its storage (by default the search's, optuna.db beside mlflow.db) and
writes <out>/<study>_study.csv and .md: per trial its number, state, objective value, the
searched parameters, its duration, and the fit seconds, epochs and test accuracy (shown, not
searched on) its training reported (<sweep dir>/<trial>/metrics/, by default
multirun/search/<study>/, while that folder is there).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import yaml

from cnnlab.core.paths import project_root
from cnnlab.search.storage import load_study

ROOT = project_root()


def trial_metrics(sweep_dir: Path, number: int) -> dict:
    """The metrics file a trial's training wrote, or {} once its folder is gone."""
    found = sorted((sweep_dir / str(number)).glob("metrics/**/*.json"))
    return json.loads(found[0].read_text(encoding="utf-8")) if found else {}


def short(key: str) -> str:
    """train.<run>.trainer.lr -> lr; train.<run>.trainer.augment.shift.0 -> augment.shift.0."""
    parts = key.split(".")
    rest = parts[2:] if parts[0] == "train" and len(parts) > 2 else parts
    return ".".join(rest[1:] if rest[0] == "trainer" and len(rest) > 1 else rest)


def rows(study, sweep_dir: Path) -> list[dict]:
    keys = sorted({k for t in study.trials for k in t.params})
    out = []
    for t in study.trials:
        metrics = trial_metrics(sweep_dir, t.number)
        row = {"trial": t.number, "state": t.state.name.lower(),
               "value": None if t.value is None else round(t.value, 4)}
        row.update({short(k): t.params.get(k) for k in keys})
        row["duration_s"] = round(t.duration.total_seconds(), 1) if t.duration else None
        row["fit_seconds"] = round(metrics["fit_seconds"], 1) if "fit_seconds" in metrics else None
        row["epochs"] = metrics.get("epochs")
        # shown, never searched on: the objective is the validation accuracy
        row["test_acc"] = round(metrics["test_acc"], 4) if "test_acc" in metrics else None
        out.append(row)
    return out


def fixed_settings(study, sweep_dir: Path) -> list[str]:
    """The overrides every trial had and the search did not vary (from a trial's folder)."""
    searched = {k for t in study.trials for k in t.params}
    for t in study.trials:
        overrides = sweep_dir / str(t.number) / ".hydra" / "overrides.yaml"
        if overrides.is_file():
            items = yaml.safe_load(overrides.read_text(encoding="utf-8")) or []
            return [o for o in items if o.split("=", 1)[0] not in searched]
    return []


def markdown(study, table: list[dict], fixed: list[str]) -> str:
    objective = study.user_attrs.get("cnnlab.objective", "value")
    done = [r for r in table if r["state"] == "complete"]
    best = max(done, key=lambda r: r["value"]) if done else None
    lines = [f"# Study `{study.study_name}` ({study.user_attrs.get('cnnlab.run', '')})", "",
             f"{len(done)} of {len(table)} trials complete; value = {objective} (maximised)."]
    if best:
        lines.append(f"Best: trial {best['trial']}, {objective} {best['value']}.")
    if fixed:
        lines.append("Fixed in every trial: " + ", ".join(f"`{o}`" for o in fixed) + ".")
    heads = list(table[0]) if table else []
    lines += ["", "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in table:
        lines.append("| " + " | ".join("" if r[h] is None else
                                        (f"{r[h]:.3g}" if h == "lr" else str(r[h]))
                                        for h in heads) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument("--storage", help="the study's RDB URI (default: optuna.db beside mlflow.db)")
    parser.add_argument("--sweep-dir", type=Path,
                        help="the study's hydra.sweep.dir (default: multirun/search/<study>)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    study = load_study(args.study, args.storage)
    sweep_dir = args.sweep_dir or ROOT / "multirun" / "search" / args.study
    table = rows(study, sweep_dir)
    text = markdown(study, table, fixed_settings(study, sweep_dir))
    args.out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]) if table else ["trial"])
    writer.writeheader()
    writer.writerows(table)
    (args.out / f"{args.study}_study.csv").write_text(buf.getvalue(), encoding="utf-8")
    (args.out / f"{args.study}_study.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
