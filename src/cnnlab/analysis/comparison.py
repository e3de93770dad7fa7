"""The experiments of one domain side by side: the results table of the speech and text stages.

A domain's experiments are the entries of `train` on its dataset, found in the params, so a
new experiment file in `conf/experiment/` joins the table with no change here.

The verdict rule for every comparison of trained models lives here, once (`paired_verdict`):
the compared models are trained with the same seeds, and a claim holds only when the mean
paired difference is at least RULE_SE standard errors, the error combining the spread of the
differences over seeds with the binomial error of the test sample.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.core.claims import Claim, read_metrics
from cnnlab.core.errors import ConfigError, DataError

RULE_SE = 2.0  # a difference holds at this many standard errors (the rule)
RULE = (f"A comparison holds (yes) when the mean paired difference over seeds is at least "
        f"{RULE_SE:g} standard errors, the error combining the spread of the paired differences "
        "over seeds with the binomial error of the test sample; the opposite sign at "
        f"{RULE_SE:g} or more is no; anything in between is not shown.")

COLUMNS = ["experiment", "model", "mean ± SE %", "seeds", "test acc %", "params", "trainable",
           "s/epoch", "fit s", "epochs"]  # test acc %: the experiment's own seed (train@)


def experiments_on(train: Mapping[str, Mapping[str, Any]], dataset: str) -> list[str]:
    """The entries of `train` on `dataset`, in config order: a domain's experiments."""
    return [name for name, exp in train.items() if exp.get("dataset") == dataset]


RESULTS_READ = ("dataset", "description", "seed")  # what a domain's table reads of an experiment


def reads_domain(cfg: Mapping[str, Any], config: Mapping[str, Any],
                 keys: Sequence[str] = RESULTS_READ) -> list[str]:
    """What a results stage reads besides its section: `keys` of every experiment of its
    domain (`train.<name>.<key>`), so that a trainer setting never reruns the table itself."""
    return [f"train.{name}.{key}" for name in experiments_on(config["train"], cfg["dataset"])
            for key in keys]


def domain_metrics(train: Mapping[str, Mapping[str, Any]], dataset: str, metrics_dir: Path
                   ) -> dict[str, dict[str, Any]]:
    """Metrics of every entry of `train` on `dataset` (config order), with its description."""
    names = experiments_on(train, dataset)
    if not names:
        raise ConfigError(f"train: no experiment has dataset={dataset!r}")
    return {name: {**read_metrics(metrics_dir / f"{name}.json"),
                   "description": train[name].get("description", "")} for name in names}


def results_rows(metrics: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One table row per experiment."""
    return [{"experiment": name,
             "model": m["description"],
             "test acc %": round(100 * float(m["test_acc"]), 2),
             "params": int(m["params"]),
             "trainable": int(m.get("trainable_params", m["params"])),
             "s/epoch": m.get("seconds_per_epoch"),
             "fit s": m.get("fit_seconds"),
             "epochs": m.get("epochs")} for name, m in metrics.items()]


def binomial_var(accuracies: Sequence[float], n: int) -> float:
    """Variance of a sum of accuracies, each measured on `n` test items (as independent)."""
    return sum(p * (1 - p) for p in accuracies) / n if n else float("nan")


@dataclass(frozen=True)
class Paired:
    """A paired comparison over seeds: mean difference, its standard error and the verdict."""

    diff: float  # mean over seeds of a - b
    se: float  # sqrt(seed spread**2 / seeds + test-sample variance)
    seeds: int
    verdict: str  # yes | no | not shown

    @property
    def holds(self) -> bool | None:
        return {"yes": True, "no": False}.get(self.verdict)

    def words(self) -> str:
        if self.seeds < 2:
            return f"difference {self.diff:+.2%} on one seed"
        z = self.diff / self.se if self.se > 0 else float("inf") * (self.diff or 0)
        return (f"paired difference {self.diff:+.2%} ± {self.se:.2%} over {self.seeds} seeds "
                f"({z:+.1f} standard errors)")


def verdict(diff: float, se: float) -> str:
    """The rule on a measured difference and its standard error."""
    return ("yes" if diff >= RULE_SE * se else "no" if -diff >= RULE_SE * se else "not shown")


def paired_verdict(a: Sequence[float], b: Sequence[float], test_var: float) -> Paired:
    """The rule: `a` and `b` are one number per seed (the same seeds, in the same order);
    `test_var` the test sample's variance of the mean difference (`binomial_var`). Under two
    seeds there is no seed spread to measure: the verdict is then "not shown"."""
    if len(a) != len(b) or not a:
        raise ConfigError(f"a paired comparison needs the same seeds on both sides, got "
                          f"{len(a)} and {len(b)} results")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return Paired(mean, float("nan"), 1, "not shown")
    se = math.sqrt(statistics.variance(diffs) / len(diffs) + test_var)
    return Paired(mean, se, len(diffs), verdict(mean, se))


def mean_se(accuracies: Sequence[float], n: int) -> tuple[float, float]:
    """Mean accuracy over seeds and its standard error (seed spread and test sample)."""
    mean = statistics.fmean(accuracies)
    spread = statistics.variance(accuracies) / len(accuracies) if len(accuracies) > 1 else 0.0
    return mean, math.sqrt(spread + binomial_var([mean], n))


def se_of_difference(a: float, b: float, n: int) -> float:
    """Standard error of the difference of two accuracies on n test items (as independent)."""
    return math.sqrt((a * (1 - a) + b * (1 - b)) / n) if n else float("nan")


def compare(a: Mapping[str, Any], b: Mapping[str, Any], n: int, names: tuple[str, str],
            test_set: str) -> tuple[float, str]:
    """Accuracy of `a` minus `b`, and the evidence in words (standard errors, parameters)."""
    diff = float(a["test_acc"]) - float(b["test_acc"])
    se = se_of_difference(float(a["test_acc"]), float(b["test_acc"]), n)
    ratio = a["params"] / b["params"]
    return diff, (f"{names[0]} {a['test_acc']:.2%} vs {names[1]} {b['test_acc']:.2%} on {n} "
                  f"{test_set} (difference {diff:+.2%}, about {diff / se:+.1f} standard errors); "
                  f"params {a['params']:,} vs {b['params']:,} (ratio {ratio:.2f})")


def comparable(a: Mapping[str, Any], b: Mapping[str, Any], tolerance: float) -> bool:
    """Parameter counts within `tolerance` of each other."""
    return abs(a["params"] / b["params"] - 1) <= tolerance


def read_manifest(path: Path, stage: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the prepared data's manifest (run {stage} "
                        f"first; {exc})") from exc


def training_curves(train: Mapping[str, Mapping[str, Any]], dataset: str, plots_dir: Path) -> str:
    """Every experiment's per-epoch history on `dataset` in one long CSV (epoch, experiment,
    val_acc, val_loss): one chart per domain in `dvc plots` (template by_experiment)."""
    lines = ["epoch,experiment,val_acc,val_loss"]
    for name in experiments_on(train, dataset):
        path = plots_dir / f"{name}.csv"
        if not path.is_file():
            continue
        with path.open(newline="") as f:
            lines += [f"{row['epoch']},{name},{row['val_acc']},{row['val_loss']}"
                      for row in csv.DictReader(f)]
    return "\n".join(lines) + "\n"


def seed_runs(train: Mapping[str, Mapping[str, Any]], metrics: Mapping[str, Mapping[str, Any]],
              seeds_path: Path) -> dict[str, dict[str, list]]:
    """Per experiment, its seeds and test accuracies: its own seed (metrics/<dataset>/<name>.json,
    the train@ stage) first, then those of the seeds stage (`seeds_path`), when it ran."""
    extra = read_metrics(seeds_path) if seeds_path.is_file() else {}
    runs = {}
    for name, m in metrics.items():
        more = extra.get(name) or {"seeds": [], "test_acc": []}
        runs[name] = {"seeds": [int(train[name]["seed"]), *map(int, more["seeds"])],
                      "test_acc": [float(m["test_acc"]), *map(float, more["test_acc"])]}
    return runs


def domain_runs(train: Mapping[str, Mapping[str, Any]], dataset: str, metrics_dir: Path
                ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, list]]]:
    """The metrics of every experiment on `dataset` (its own seed) and every seed's runs:
    metrics/<dataset>/<name>.json and metrics/<dataset>/seeds.json under `metrics_dir`."""
    metrics = domain_metrics(train, dataset, metrics_dir / dataset)
    return metrics, seed_runs(train, metrics, metrics_dir / dataset / "seeds.json")


def paired_values(a: Mapping[str, list], b: Mapping[str, list], key: str = "test_acc"
                  ) -> tuple[list[float], list[float]]:
    """The values of `key` of the seeds both runs have, in the same order: the pairs."""
    b_by_seed = dict(zip(b["seeds"], b[key], strict=True))
    pairs = [(x, b_by_seed[s]) for s, x in zip(a["seeds"], a[key], strict=True) if s in b_by_seed]
    return [x for x, _ in pairs], [y for _, y in pairs]


def paired_claim(claim: str, experiment: str, a: Sequence[float], b: Sequence[float],
                 test_var: float, measured: str) -> Claim:
    """A claim judged by the rule: `a` - `b` per seed, `measured` says what was compared."""
    result = paired_verdict(a, b, test_var)
    note = "" if result.seeds > 1 else ": one seed, so no seed spread to judge by"
    return Claim(claim=claim, experiment=experiment, evidence=f"{measured}: {result.words()}{note}",
                 value=result.diff, holds=result.holds, verdict=result.verdict)


def with_seeds(rows: list[dict[str, Any]], runs: Mapping[str, Mapping[str, list]], n: int
               ) -> list[dict[str, Any]]:
    """The table rows with each model's mean ± standard error over its seeds."""
    out = []
    for row in rows:
        accs = runs[row["experiment"]]["test_acc"]
        mean, se = mean_se(accs, n)
        out.append({**row, "seeds": len(accs),
                    "mean ± SE %": f"{100 * mean:.2f} ± {100 * se:.2f}"})
    return out


def seed_summary(metrics: Mapping[str, Mapping[str, Any]], runs: Mapping[str, Mapping[str, list]],
                 n: int) -> dict[str, dict[str, Any]]:
    """Per experiment, for metrics/<results stage>.json (and `dvc exp show`): its own seed's
    test accuracy, every seed's, and their mean and standard error."""
    summary = {}
    for name, m in metrics.items():
        mean, se = mean_se(runs[name]["test_acc"], n)
        summary[name] = {"test_acc": m["test_acc"], "params": m["params"],
                         "seeds": runs[name]["seeds"], "test_acc_seeds": runs[name]["test_acc"],
                         "test_acc_mean": mean, "test_acc_se": se}
    return summary
