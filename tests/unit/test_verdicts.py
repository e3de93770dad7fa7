"""The verdict rule for comparisons of trained models: paired seeds, seed spread and test-sample
error combined, yes / no / not shown at 2 standard errors; the report shows each verdict."""

from __future__ import annotations

import json
import math

import pytest

from cnnlab.analysis.comparison import (
    RULE,
    RULE_SE,
    binomial_var,
    mean_se,
    paired_claim,
    paired_values,
    paired_verdict,
)
from cnnlab.analysis.report import build_report, read_checked_claims
from cnnlab.core.claims import Claim, write_claims
from cnnlab.core.errors import ConfigError, DataError


def test_the_error_combines_the_seed_spread_and_the_test_sample():
    a, b = [0.80, 0.82, 0.84], [0.78, 0.79, 0.80]
    diffs = [0.02, 0.03, 0.04]
    test_var = binomial_var([0.82, 0.79], 1000)
    result = paired_verdict(a, b, test_var)
    assert result.diff == pytest.approx(0.03)
    spread = sum((d - 0.03) ** 2 for d in diffs) / 2 / 3
    assert result.se == pytest.approx(math.sqrt(spread + test_var))
    assert result.seeds == 3


@pytest.mark.parametrize(("a", "b", "n", "verdict", "holds"), [
    ([0.90, 0.91, 0.92], [0.80, 0.81, 0.82], 1000, "yes", True),   # +10 points, tiny error
    ([0.80, 0.81, 0.82], [0.90, 0.91, 0.92], 1000, "no", False),   # the opposite sign
    ([0.79, 0.80, 0.81], [0.78, 0.79, 0.80], 1000, "not shown", None),  # +1 point: noise
    ([0.90, 0.91, 0.92], [0.80, 0.81, 0.82], 10, "not shown", None),  # 10 test items: noise
    ([0.90, 0.70, 0.92], [0.80, 0.81, 0.82], 10_000, "not shown", None),  # seeds disagree
])
def test_the_rule_at_two_standard_errors(a, b, n, verdict, holds):
    result = paired_verdict(a, b, binomial_var([sum(a) / 3, sum(b) / 3], n))
    assert result.verdict == verdict and result.holds is holds
    assert (abs(result.diff) >= RULE_SE * result.se) == (verdict != "not shown")


def test_one_seed_is_not_shown_and_unpaired_runs_are_an_error():
    assert paired_verdict([0.9], [0.5], 0.0).verdict == "not shown"
    with pytest.raises(ConfigError, match="same seeds"):
        paired_verdict([0.9, 0.8], [0.5], 0.0)


def test_pairs_follow_the_seeds_not_the_order():
    a = {"seeds": [42, 43, 44], "test_acc": [0.1, 0.2, 0.3]}
    b = {"seeds": [44, 42], "test_acc": [0.6, 0.4]}
    assert paired_values(a, b) == ([0.1, 0.3], [0.4, 0.6])


def test_mean_and_error_of_one_model():
    mean, se = mean_se([0.8, 0.9], 100)
    assert mean == pytest.approx(0.85)
    assert se == pytest.approx(math.sqrt(0.005 / 2 + 0.85 * 0.15 / 100))  # sample variance 0.005


def test_a_not_shown_claim_is_labelled_apart_from_not_measurable(tmp_path):
    shown = paired_claim("A beats B", "a vs b", [0.79, 0.80, 0.81], [0.78, 0.79, 0.80],
                         binomial_var([0.8, 0.79], 1000), "a vs b")
    assert (shown.label, shown.holds, shown.verdict) == ("not shown", None, "not shown")
    assert "standard errors" in shown.evidence and "3 seeds" in shown.evidence
    unmeasured = Claim("C", "c", "c was not run", None, None)
    assert unmeasured.label == "not measurable"
    assert Claim("D", "d", "exact", 1.0, False).label == "no"
    write_claims(tmp_path / "claims.json", [shown, unmeasured])
    assert [c.label for c in read_checked_claims(tmp_path / "claims.json")] == [
        "not shown", "not measurable"]


def test_report_counts_and_shows_each_verdict_and_the_rule(tmp_path):
    reports = tmp_path / "reports"
    (reports / "speech").mkdir(parents=True)
    (reports / "old").mkdir()
    write_claims(reports / "speech" / "claims.json", [
        paired_claim("A beats B", "a vs b", [0.9, 0.91, 0.92], [0.8, 0.81, 0.82], 1e-6, "x"),
        paired_claim("C beats D", "c vs d", [0.8, 0.81, 0.8], [0.8, 0.8, 0.81], 1e-4, "y")])
    (reports / "old" / "claims.json").write_text(json.dumps([  # written before verdicts
        {"claim": "E", "experiment": "e", "evidence": "z", "value": 1.0, "holds": False}]))
    counts = build_report({"topics": {"speech": "Speech", "old": "Old"}}, reports, {},
                          lambda name: reports / name)
    assert (counts["hold"], counts["fail"], counts["not_shown"], counts["unmeasured"]) == (
        1, 1, 1, 0)
    page = (reports / "report.html").read_text()
    assert RULE in page and '<td class="not-shown">not shown</td>' in page
    assert '<td class="no">no</td>' in page and "<b>not shown</b>" in page
    assert "not shown: 1" in (reports / "report.md").read_text()


def test_a_verdict_that_contradicts_holds_is_a_bad_row(tmp_path):
    path = tmp_path / "claims.json"
    path.write_text(json.dumps([{"claim": "E", "experiment": "e", "evidence": "z", "value": 1.0,
                                 "holds": True, "verdict": "not shown"}]))
    with pytest.raises(DataError, match="bad verdict"):
        read_checked_claims(path)
