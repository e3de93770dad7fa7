"""The comparison's rules on hand-made sides: seeds judged by the one rule, single values never
judged, timings apart, float noise equal, claims only where both sides could read the topic."""

from __future__ import annotations

import pytest

from cnnlab.analysis.comparison import binomial_var, paired_verdict
from cnnlab.compare.changes import compare
from cnnlab.compare.page import as_json, render_html, render_markdown
from cnnlab.compare.sides import Side, flatten
from cnnlab.core.claims import Claim

pytestmark = pytest.mark.unit
SEEDS = "metrics/audio/seeds.json:audio_dense"
ENV = {"torch": "2.9.1", "cpu": "AMD EPYC", "git_commit": "a"}


def side(label: str, accs: list[float], lr: float, single: float, seconds: float,
         claim_value: float, env: dict[str, str], topics: tuple[str, ...] = ("audio_results",)
         ) -> Side:
    metrics = {f"{SEEDS}.seeds": [43, 44, 45], f"{SEEDS}.test_acc": accs,
               f"{SEEDS}.test_samples": 800, "metrics/audio/audio_dense.json:test_acc": single,
               "metrics/audio/audio_dense.json:fit_seconds": seconds,
               "metrics/audio/audio_dense.json:noise": 0.1 + 0.2}
    claim = Claim("dense loses", "audio_full2d vs audio_dense", "…", claim_value, True, "yes")
    claims = {t: {(claim.claim, claim.experiment): claim} for t in topics}
    return Side(label, flatten({"train": {"audio_dense": {"trainer": {"lr": lr}}}}), metrics,
                {"audio_dense": [{"epoch": 0, "val_acc": accs[0]}]}, claims, "",
                {"audio_dense": env})


def test_seed_lists_are_judged_by_the_rule_and_single_values_are_not():
    a = side("a", [0.90, 0.91, 0.90], 0.001, 0.90, 10.0, 0.05, ENV)
    b = side("b", [0.95, 0.96, 0.955], 0.01, 0.95, 12.0, 0.08, ENV)
    b.metrics["metrics/audio/audio_dense.json:noise"] = 0.3  # 0.1 + 0.2 != 0.3 in floats
    changes = compare(a, b)
    assert changes.params == [("train.audio_dense.trainer.lr", 0.001, 0.01)]
    by_key = {m.key: m for m in changes.metrics}
    seeds = by_key[f"{SEEDS}.test_acc"]
    want = paired_verdict([0.95, 0.96, 0.955], [0.90, 0.91, 0.90],
                          binomial_var([0.9033333, 0.955], 800))
    assert seeds.delta == pytest.approx(want.diff)
    assert seeds.judged.startswith("higher: paired difference +5.17%")
    assert by_key["metrics/audio/audio_dense.json:test_acc"].judged == ""
    assert "metrics/audio/audio_dense.json:noise" not in by_key
    assert [m.key for m in changes.timings] == ["metrics/audio/audio_dense.json:fit_seconds"]
    assert [(c.a.value, c.b.value) for c in changes.claims] == [(0.05, 0.08)]
    assert list(changes.curves) == ["audio_dense"]
    assert changes.environment_warning == ""  # the git keys are left out


def test_noise_stays_within_noise_and_a_new_machine_is_warned_about():
    a = side("a", [0.90, 0.95, 0.90], 0.001, 0.90, 10.0, 0.05, ENV)
    b = side("b", [0.92, 0.90, 0.93], 0.001, 0.91, 10.0, 0.05, {**ENV, "cpu": "Intel Xeon"})
    changes = compare(a, b)
    (seeds,) = [m for m in changes.metrics if m.key == f"{SEEDS}.test_acc"]
    assert seeds.judged.startswith("within noise")
    assert changes.claims == []  # the same verdict and value
    assert changes.environment_warning == ("warning: the two sides ran in different environments "
                                           "(cpu): results differ across machines")
    md = render_markdown(changes, a, b, None)
    assert changes.environment_warning in md and "within noise" in md
    assert changes.environment_warning in render_html(changes, a, b, None)


def test_a_topic_one_side_could_not_read_is_not_reported_as_claims_gone():
    a = side("a", [0.9] * 3, 0.001, 0.9, 1.0, 0.05, ENV, topics=("audio_results",))
    b = side("b", [0.9] * 3, 0.001, 0.9, 1.0, 0.07, ENV, topics=())
    assert compare(a, b).claims == []
    both = side("b", [0.9] * 3, 0.001, 0.9, 1.0, 0.05, ENV)
    both.claims["audio_results"] = {}  # the topic read, the claim gone
    (gone,) = as_json(compare(a, both), a, both)["claims"]
    assert gone["a"]["value"] == 0.05 and gone["b"] is None
