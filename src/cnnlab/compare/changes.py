"""What differs between two sides: params, metrics, claims, curves and environments.

A metric that holds one number per seed on both sides, with the same seeds, is judged by the
project's one rule (`paired_verdict`): the page says higher or lower only when the paired
difference clears it, and "within noise" otherwise. A single number per side is never judged,
because one seed cannot tell a change from noise. Timings differ on every run and depend on
the machine, so they are listed apart and never judged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from cnnlab.analysis.comparison import Paired, binomial_var, paired_verdict
from cnnlab.compare.sides import ClaimKey, Side, environments
from cnnlab.core import environment
from cnnlab.core.claims import Claim

TIMING = re.compile(r"(seconds|_s$|_time$|per_sec)")
JUDGED = {"yes": "higher", "no": "lower", "not shown": "within noise"}


@dataclass(frozen=True)
class MetricChange:
    key: str  # "<file>:<dotted key>"
    a: Any
    b: Any
    delta: float | None  # b - a (the mean over seeds for a seed list); None when not numbers
    judged: str = ""  # higher | lower | within noise, with the rule's figures; "" not judged


@dataclass(frozen=True)
class ClaimChange:
    key: ClaimKey
    a: Claim | None  # None: the claim is new on side b
    b: Claim | None  # None: the claim is gone on side b


@dataclass
class Changes:
    params: list[tuple[str, Any, Any]]
    metrics: list[MetricChange]
    timings: list[MetricChange]
    claims: list[ClaimChange]
    curves: dict[str, tuple[list[dict[str, float]], list[dict[str, float]]]]  # changed experiments
    environment_keys: list[str]  # the environment keys that differ (git keys left out)
    environments: tuple[dict[str, str], dict[str, str]]  # one representative per side

    @property
    def environment_warning(self) -> str:
        if not self.environment_keys:
            return ""
        return (f"warning: the two sides ran in different environments ("
                f"{', '.join(self.environment_keys)}): results differ across machines")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_number(v) for v in value)


def _mean(value: Any) -> float:
    return sum(value) / len(value) if isinstance(value, list) else float(value)


def _sibling(key: str, name: str) -> str:
    """The key `name` beside `key` in the same object: "f.json:a.test_acc" -> "f.json:a.seeds"."""
    file, _, dotted = key.partition(":")
    parent = dotted.rpartition(".")[0]
    return f"{file}:{parent}.{name}" if parent else f"{file}:{name}"


def paired_seeds(key: str, a: Side, b: Side) -> Paired | None:
    """The rule on a metric that holds one number per seed on both sides with the same seeds
    (its sibling `seeds`) and a test size (`test_samples`); None when it is not such a metric."""
    seeds, size = _sibling(key, "seeds"), _sibling(key, "test_samples")
    va, vb, n = a.metrics[key], b.metrics[key], a.metrics.get(size)
    if not (_numbers(va) and _numbers(vb) and a.metrics.get(seeds) == b.metrics.get(seeds)
            and len(va) == len(vb) == len(a.metrics.get(seeds) or [])
            and _number(n) and n == b.metrics.get(size)):
        return None
    return paired_verdict(vb, va, binomial_var([_mean(va), _mean(vb)], int(n)))


def metric_changes(a: Side, b: Side) -> tuple[list[MetricChange], list[MetricChange]]:
    """(results, timings): every metric whose value differs, present on either side."""
    results, timings = [], []
    for key in sorted(set(a.metrics) | set(b.metrics)):
        va, vb = a.metrics.get(key), b.metrics.get(key)
        if va == vb or (_number(va) and _number(vb) and _same(va, vb)):  # float noise is equal
            continue
        numeric = (_number(va) or _numbers(va)) and (_number(vb) or _numbers(vb))
        delta = _mean(vb) - _mean(va) if numeric else None
        judged = ""
        if numeric and key in a.metrics and key in b.metrics:
            paired = paired_seeds(key, a, b)
            if paired:
                judged = f"{JUDGED[paired.verdict]}: {paired.words()}"
        change = MetricChange(key, va, vb, delta, judged)
        (timings if TIMING.search(key.rsplit(".", 1)[-1].split(":")[-1]) else results).append(change)
    return results, timings


def _same(x: float | None, y: float | None) -> bool:
    if x is None or y is None:
        return x is y
    return math.isclose(x, y, rel_tol=0, abs_tol=1e-12)


def claim_changes(a: Side, b: Side) -> list[ClaimChange]:
    """Every claim whose verdict or value changed, or that only one side has, in the topics
    that both sides could read (a topic missing on one side is named in its note instead)."""
    changed = []
    for topic in [t for t in a.claims if t in b.claims]:
        ta, tb = a.claims[topic], b.claims[topic]
        for key in list(ta) + [k for k in tb if k not in ta]:
            ca, cb = ta.get(key), tb.get(key)
            if ca is None or cb is None or ca.label != cb.label or not _same(ca.value, cb.value):
                changed.append(ClaimChange(key, ca, cb))
    return changed


def changed_experiments(a: Side, b: Side, params: list[tuple[str, Any, Any]]) -> list[str]:
    """Experiments whose own params (`train.<name>.*`) or training curve differ."""
    by_params = {key.split(".")[1] for key, _, _ in params if key.startswith("train.")}
    by_curve = {name for name in set(a.curves) | set(b.curves)
                if a.curves.get(name) != b.curves.get(name)}
    return sorted(by_params | by_curve)


def compare(a: Side, b: Side) -> Changes:
    params = [(k, a.params.get(k), b.params.get(k)) for k in sorted(set(a.params) | set(b.params))
              if a.params.get(k) != b.params.get(k)]
    results, timings = metric_changes(a, b)
    names = changed_experiments(a, b, params)
    curves = {n: (a.curves.get(n, []), b.curves.get(n, [])) for n in names
              if a.curves.get(n) or b.curves.get(n)}
    env_a, env_b = (next(iter(environments(side, names).values()), {}) for side in (a, b))
    differ = environment.differences(env_a, env_b) if env_a and env_b else []
    return Changes(params, results, timings, claim_changes(a, b), curves, differ, (env_a, env_b))
