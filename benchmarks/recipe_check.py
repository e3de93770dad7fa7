"""The lecture CNN's recipes side by side: the 3-epoch recipe against the current one.

Both train through the real code path (`cnnlab.training.run.train_experiment`, Lightning, the
in-memory batches), without tracking, on the same seeds, alternating old and new per seed so
that both see the same machine. For each: full test accuracy and fit seconds (as the stage's
metrics report them); then the ratio new/old of the fit seconds.

    python benchmarks/recipe_check.py [--seeds 42 43 44] [--threads 1] [--out FILE.md]

`new` is train.mnist_cnn as conf/ composes it; `old` is the recipe and execution before issue
19: 3 epochs, one-cycle Adam at 3e-3, batch 128, no augmentation, NCHW layout, and the NaN
fill of new tensors (`Classifier.fill_uninitialized_memory`). `--threads` applies to both
(default: the config's); on a machine shared with other jobs, 1 thread each is fairer to both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cnnlab.core.paths import project_root
from cnnlab.training.module import Classifier
from cnnlab.training.run import RunOutputs, train_experiment

ROOT = project_root()
OLD = {"max_epochs": 3, "batch_size": 128, "optimizer": "adam", "lr": 0.003,
       "schedule": "onecycle", "weight_decay": 0.0, "channels_last": False,
       "augment.shift": [0, 0], "augment.mask": [0, 0]}
RECIPE_KEYS = tuple(OLD)


def experiment(overrides: list[str]) -> dict[str, Any]:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return OmegaConf.to_container(cfg.train.mnist_cnn, resolve=True)


def train(cfg: dict[str, Any], data: Path, fill: bool) -> dict[str, Any]:
    Classifier.fill_uninitialized_memory = fill
    with tempfile.TemporaryDirectory(prefix="recipe-check-") as tmp:
        return train_experiment("mnist_cnn", cfg, data,
                                RunOutputs(Path(tmp) / "model.ckpt", Path(tmp) / "history.csv"),
                                evidence=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data/prepared/mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--threads", type=int, help="torch threads for both (default: the config's)")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args()
    base = [f"train.mnist_cnn.trainer.threads={args.threads}"] if args.threads else []
    recipes = {"old": [f"train.mnist_cnn.trainer.{k}={v}" for k, v in OLD.items()], "new": []}
    shown = {name: {k: OmegaConf.select(OmegaConf.create(experiment(base + o)["trainer"]), k)
                    for k in RECIPE_KEYS} for name, o in recipes.items()}
    lines = [f"# Lecture CNN recipes side by side ({len(args.seeds)} seeds, threads="
             f"{args.threads or 'config'}, {os.cpu_count()} CPUs)", ""]
    lines += [f"- {name}: " + ", ".join(f"{k}={v}" for k, v in r.items())
              + (", NaN fill of new tensors" if name == "old" else "") for name, r in shown.items()]
    lines += [f"- load average at start: {os.getloadavg()[0]:.2f}", "",
              "| seed | recipe | test acc | fit s | epochs | s/epoch |", "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    results: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for seed in args.seeds:
        for name, overrides in recipes.items():
            m = train(experiment([*base, *overrides, f"train.mnist_cnn.seed={seed}"]), args.data,
                      fill=name == "old")
            results[name].append(m)
            line = (f"| {seed} | {name} | {m['test_acc']:.2%} | {m['fit_seconds']:.1f} | "
                    f"{m['epochs']} | {m['seconds_per_epoch']:.1f} |")
            lines.append(line)
            print(line, flush=True)
    fit = {name: sum(m["fit_seconds"] for m in rs) for name, rs in results.items()}
    pairs = [n["fit_seconds"] / o["fit_seconds"] for o, n in
             zip(results["old"], results["new"], strict=True)]
    summary = [""] + [
        f"- {name}: test accuracy {min(m['test_acc'] for m in rs):.2%} to "
        f"{max(m['test_acc'] for m in rs):.2%} (mean {statistics.mean(m['test_acc'] for m in rs):.2%}), "
        f"fit {fit[name]:.1f} s over {len(rs)} seeds" for name, rs in results.items()] + [
        f"- fit time new/old: {fit['new'] / fit['old']:.3f} over all seeds; per seed "
        + ", ".join(f"{r:.3f}" for r in pairs),
        f"- load average at end: {os.getloadavg()[0]:.2f} (on {os.cpu_count()} CPUs)"]
    lines += summary
    print("\n".join(summary), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
