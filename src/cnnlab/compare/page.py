"""The comparison as one page: markdown for a pull-request comment, and self-contained HTML."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from cnnlab.analysis.comparison import RULE
from cnnlab.analysis.report import STYLE, html_table, img_tag
from cnnlab.analysis.report import curves_png as report_curves
from cnnlab.compare.changes import Changes, MetricChange
from cnnlab.compare.sides import Side
from cnnlab.core.claims import Claim, markdown_table

PARAM_COLUMNS = ["param", "a", "b"]
METRIC_COLUMNS = ["metric", "a", "b", "delta", "judged by the rule"]
CLAIM_COLUMNS = ["claim", "experiment", "a verdict", "b verdict", "a value", "b value"]
ONE_VALUE = ("A metric with one value per side is not judged: one seed cannot tell a change "
             "from noise. Seed lists are judged by the project's rule: ")


def _value(value: Any) -> Any:
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return f"{sum(value) / len(value):.4g} (mean of {len(value)})"
    return value


def _rows(changes: Changes, a: Side, b: Side) -> dict[str, list[dict[str, Any]]]:
    def metric_rows(found: Sequence[MetricChange]) -> list[dict[str, Any]]:
        return [{"metric": m.key, "a": _value(m.a), "b": _value(m.b),
                 "delta": None if m.delta is None else f"{m.delta:+.4g}",
                 "judged by the rule": m.judged or "-"} for m in found]

    claims = [{"claim": c.key[0], "experiment": c.key[1],
               "a verdict": c.a.label if c.a else "absent", "b verdict": c.b.label if c.b else "absent",
               "a value": c.a.value if c.a else None, "b value": c.b.value if c.b else None}
              for c in changes.claims]
    env_a, env_b = changes.environments
    envs = [{"key": f"{k} (differs)" if k in changes.environment_keys else k,
             "a": env_a.get(k, "-"), "b": env_b.get(k, "-")} for k in dict.fromkeys([*env_a, *env_b])]
    return {"params": [{"param": k, "a": va, "b": vb} for k, va, vb in changes.params],
            "metrics": metric_rows(changes.metrics), "timings": metric_rows(changes.timings),
            "claims": claims, "environments": envs}


def as_json(changes: Changes, a: Side, b: Side) -> dict[str, Any]:
    """The page's content for programs (a CI gate, the tests): values unformatted."""
    def claim(c: Claim | None) -> dict[str, Any] | None:
        return c and {"verdict": c.label, "value": c.value, "evidence": c.evidence}

    return {"a": a.label, "b": b.label,
            "params": [{"param": k, "a": va, "b": vb} for k, va, vb in changes.params],
            "metrics": [asdict(m) for m in changes.metrics],
            "timings": [asdict(m) for m in changes.timings],
            "claims": [{"claim": c.key[0], "experiment": c.key[1], "a": claim(c.a), "b": claim(c.b)}
                       for c in changes.claims],
            "environment_differs": changes.environment_keys,
            "environments": {"a": changes.environments[0], "b": changes.environments[1]},
            "notes": _notes(changes, a, b)}


def _environment_line(changes: Changes) -> str:
    if not all(changes.environments):
        return "Not known for both sides (see the notes): the runs are not in this MLflow store."
    return changes.environment_warning or ("The same machine and software on both sides "
                                           "(the git keys aside).")


def headline(changes: Changes, a: Side, b: Side) -> str:
    return (f"a = {a.label}, b = {b.label}: {len(changes.params)} params, "
            f"{len(changes.metrics)} metrics and {len(changes.claims)} claims differ.")


def _notes(changes: Changes, a: Side, b: Side) -> list[str]:
    notes = [n for n in (a.claims_note, b.claims_note) if n]
    if not all(changes.environments):
        notes.append("environment: " + "; ".join(
            f"{s.label}: {'recorded' if env else 'not in this MLflow store'}"
            for s, env in zip((a, b), changes.environments, strict=True)))
    return notes


def curves_png(changes: Changes, a: Side, b: Side) -> bytes | None:
    """Validation accuracy per epoch of each changed experiment: a dashed, b solid."""
    lines, styles = {}, {}
    for i, (name, pair) in enumerate(changes.curves.items()):
        for rows, dash, side in zip(pair, ("--", "-"), (a, b), strict=True):
            if rows:
                label = f"{name}: {side.label}"
                lines[label], styles[label] = rows, {"linestyle": dash, "color": f"C{i % 10}"}
    return report_curves(lines, styles) if lines else None


def _md(text: Any) -> Any:
    return text.replace("|", "\\|").replace("\n", " ") if isinstance(text, str) else text


def _md_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    return markdown_table([{k: _md(v) for k, v in r.items()} for r in rows], columns)


def render_markdown(changes: Changes, a: Side, b: Side, curves: str | None) -> str:
    """For a pull-request comment: the curves figure is linked by the path `curves`."""
    rows = _rows(changes, a, b)
    blocks = ["# cnnlab compare", headline(changes, a, b)]
    if changes.environment_warning:
        blocks.append(f"**{changes.environment_warning}**")
    blocks += ["## Claims whose verdict or value changed",
               _md_table(rows["claims"], CLAIM_COLUMNS) if rows["claims"] else "None.",
               "## Params that differ",
               _md_table(rows["params"], PARAM_COLUMNS) if rows["params"] else "None.",
               "## Metrics that differ", ONE_VALUE + RULE,
               _md_table(rows["metrics"], METRIC_COLUMNS) if rows["metrics"] else "None."]
    if curves:
        blocks += ["## Training curves of the changed experiments",
                   f"![validation accuracy, a dashed and b solid]({curves})"]
    blocks += ["## Environments", _environment_line(changes)]
    if rows["environments"]:
        blocks.append("<details><summary>Both environments</summary>\n\n"
                      + _md_table(rows["environments"], ["key", "a", "b"]) + "\n</details>")
    if rows["timings"]:
        blocks.append("<details><summary>Timings (machine-dependent, never judged)</summary>\n\n"
                      + _md_table(rows["timings"], METRIC_COLUMNS) + "\n</details>")
    blocks += [f"- {note}" for note in _notes(changes, a, b)]
    return "\n\n".join(blocks) + "\n"


def render_html(changes: Changes, a: Side, b: Side, curves: bytes | None) -> str:
    rows = _rows(changes, a, b)

    def table(name: str, columns: Sequence[str]) -> str:
        return html_table(rows[name], columns) if rows[name] else "<p>None.</p>"

    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>cnnlab compare</title>",
             f"<style>{STYLE}.warning{{background:#fff4d6;padding:.5em}}</style></head><body>",
             "<h1>cnnlab compare</h1>", f"<p>{html.escape(headline(changes, a, b))}</p>"]
    if changes.environment_warning:
        parts.append(f"<p class='warning'>{html.escape(changes.environment_warning)}</p>")
    parts += ["<h2>Claims whose verdict or value changed</h2>", table("claims", CLAIM_COLUMNS),
              "<h2>Params that differ</h2>", table("params", PARAM_COLUMNS),
              "<h2>Metrics that differ</h2>", f"<p>{html.escape(ONE_VALUE + RULE)}</p>",
              table("metrics", METRIC_COLUMNS)]
    if curves:
        parts += ["<h2>Training curves of the changed experiments</h2>",
                  img_tag(curves, "validation accuracy, a dashed and b solid")]
    parts += ["<h2>Environments</h2>", f"<p>{html.escape(_environment_line(changes))}</p>",
              table("environments", ["key", "a", "b"])]
    if rows["timings"]:
        parts += ["<details><summary>Timings (machine-dependent, never judged)</summary>",
                  table("timings", METRIC_COLUMNS), "</details>"]
    parts += ["<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in _notes(changes, a, b)) + "</ul>",
              "</body></html>\n"]
    return "\n".join(parts)
