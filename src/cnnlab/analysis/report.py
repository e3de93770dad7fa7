"""The final report: every lecture claim with its measured number, then each topic's figures.

It reads what the stages before it left behind: `reports/<topic>/claims.json` (rows of
claim, experiment, evidence, value, holds, verdict), the figures `reports/<topic>/*.png`, the training
metrics `metrics/*.json` and training histories `plots/*.csv`. A topic whose folder or claims
file is missing is reported as "not run"; a claims file that cannot be read stops the report
with an error naming it (a silently dropped claim would be worse than no report).

Environments: results differ in their last digits between machines, so the report lists the
environments its numbers came from: the training runs', the numbers every claim rests on, and
its own process's. A training's run is found in the MLflow store by its metrics file's
`fit_seconds`, a wall time that no other run shares (`run_environment`, given by the stage),
so a run is named only if it wrote those very numbers; one not in the store (models trained
elsewhere and fetched with `dvc pull`) shows as unknown, never guessed. This section is the one
part of the report that is not a function of its DVC deps: it is provenance, not a result,
and stage outputs gain nothing for it.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cnnlab.analysis.comparison import RULE
from cnnlab.core import environment
from cnnlab.core.claims import VERDICTS, Claim, markdown_table, read_metrics
from cnnlab.core.errors import DataError
from cnnlab.core.io import write_text

METRIC_COLUMNS = ["experiment", "test_acc", "final_val_acc", "params", "epochs", "seconds_per_epoch"]
CLAIM_COLUMNS = ["topic", "claim", "experiment", "measured", "value", "holds"]
CURVES_NAME = "training_curves.png"
THIS_REPORT = "this report"
CLAIM_FIELDS = tuple(f.name for f in fields(Claim))
OPTIONAL_FIELDS = ("verdict",)  # claims files written before verdicts existed lack it


@dataclass
class Topic:
    name: str  # the folder under reports/
    title: str
    claims: list[Claim] | None  # None: the stage has not run
    figures: list[Path] = field(default_factory=list)  # relative to the reports dir
    tables: list[Path] = field(default_factory=list)


def read_checked_claims(path: Path) -> list[Claim]:
    """Claims of one file, each field of the right type, or DataError naming the file."""
    try:
        rows = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: claims file is not readable JSON ({exc})") from exc
    if not isinstance(rows, list):
        raise DataError(f"{path}: claims file must hold a list of rows, got {type(rows).__name__}")
    claims = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not (
                set(CLAIM_FIELDS) - set(OPTIONAL_FIELDS) <= set(row) <= set(CLAIM_FIELDS)):
            raise DataError(f"{path}: row {i} must have exactly the keys {list(CLAIM_FIELDS)}")
        value, holds, verdict = row["value"], row["holds"], row.get("verdict", "")
        problems = [name for name, ok in (
            ("claim", isinstance(row["claim"], str) and row["claim"].strip()),
            ("experiment", isinstance(row["experiment"], str)),
            ("evidence", isinstance(row["evidence"], str)),
            ("value", value is None or (isinstance(value, int | float)
                                        and not isinstance(value, bool))),
            ("holds", holds is None or isinstance(holds, bool)),
            ("verdict", verdict in ("", *VERDICTS) and (
                not verdict or {"yes": True, "no": False}.get(verdict) == holds))) if not ok]
        if problems:
            raise DataError(f"{path}: row {i} has a bad {', '.join(problems)}")
        claims.append(Claim(**row))
    return claims


def collect_topics(reports_dir: Path, expected: Mapping[str, str]) -> list[Topic]:
    """The expected topics in their order ("not run" when absent), then any other topic found."""
    found = sorted(p.parent.name for p in reports_dir.glob("*/claims.json"))
    names = list(expected) + [n for n in found if n not in expected]
    topics = []
    for name in names:
        folder = reports_dir / name
        claims_path = folder / "claims.json"
        claims = read_checked_claims(claims_path) if claims_path.is_file() else None
        figures = sorted(p.relative_to(reports_dir) for p in folder.glob("*.png"))
        tables = sorted(p.relative_to(reports_dir) for p in folder.glob("*.md"))
        topics.append(Topic(name, expected.get(name, name), claims, figures, tables))
    return topics


@dataclass(frozen=True)
class Training:
    """Where one experiment's training left its numbers."""

    metrics: Path  # metrics/<dataset>/<experiment>.json
    history: Path  # plots/<dataset>/<experiment>.csv


def collect_metrics(trainings: Mapping[str, Training]) -> list[dict[str, Any]]:
    """One row per experiment that has been trained, sorted by experiment."""
    rows = []
    for name in sorted(trainings):
        path = trainings[name].metrics
        if not path.is_file():
            continue
        metrics = read_metrics(path)
        if not isinstance(metrics, dict):
            raise DataError(f"{path}: metrics file must hold an object")
        rows.append({"experiment": name, **metrics})
    return rows


def read_histories(trainings: Mapping[str, Training]) -> dict[str, list[dict[str, float]]]:
    """Training histories (epoch, val_acc, ...) of the trained experiments, unreadable ones named."""
    histories = {}
    for name in sorted(trainings):
        path = trainings[name].history
        if not path.is_file():
            continue
        try:
            with path.open(newline="") as f:
                rows = [{k: float(v) for k, v in row.items() if v not in ("", None)}
                        for row in csv.DictReader(f)]
        except (OSError, ValueError, csv.Error) as exc:
            raise DataError(f"{path}: not a readable training history ({exc})") from exc
        if rows and "epoch" in rows[0] and "val_acc" in rows[0]:
            histories[name] = rows
    return histories


def curves_png(histories: Mapping[str, list[dict[str, float]]],
               styles: Mapping[str, Mapping[str, Any]] | None = None) -> bytes:
    """Validation accuracy per epoch of every experiment, as PNG bytes; `styles`: matplotlib
    line settings per name (compare draws one side dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, rows in histories.items():
        ax.plot([r["epoch"] for r in rows], [r["val_acc"] for r in rows], marker="o", label=name,
                **(styles or {}).get(name, {}))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


@dataclass
class Environments:
    """The distinct environments behind the report, and what was made in each."""

    made_in: list[tuple[dict[str, str], list[str]]]  # environment, names (trainings, report)
    unknown: list[str]  # trainings whose run is not in the store

    @classmethod
    def of(cls, envs: Mapping[str, Mapping[str, str] | None]) -> Environments:
        made_in: list[tuple[dict[str, str], list[str]]] = []
        for name, env in envs.items():
            if not env:
                continue
            names = next((names for known, names in made_in if known == env), None)
            if names is None:
                made_in.append((dict(env), names := []))
            names.append(name)
        return cls(made_in, [name for name, env in envs.items() if not env])

    def legend(self) -> list[str]:
        return ([f"env {i}: {', '.join(names)}" for i, (_, names) in enumerate(self.made_in, 1)]
                + ([f"not in this MLflow store: {', '.join(self.unknown)}"] if self.unknown
                   else []))

    def columns(self) -> list[str]:
        return ["key", *(f"env {i}" for i in range(1, len(self.made_in) + 1))]

    def rows(self) -> list[dict[str, str]]:
        """One row per key; a key whose value differs between environments says so."""
        envs = [env for env, _ in self.made_in]
        differ = {k for env in envs[1:] for k in environment.differences(envs[0], env, ())}
        keys = dict.fromkeys(k for env in envs for k in env)
        return [{"key": f"{k} (differs)" if k in differ else k,
                 **{f"env {i}": env.get(k, "-") for i, env in enumerate(envs, 1)}} for k in keys]


ENVIRONMENTS_NOTE = ("The machines and software the numbers came from: each training's MLflow "
                     "run (`cnnlab.env.*` tags), and this report's own process. Results differ "
                     "in their last digits across machines.")


def claim_rows(topics: Sequence[Topic]) -> list[dict[str, Any]]:
    rows = []
    for t in topics:
        if t.claims is None:
            rows.append({"topic": t.title, "claim": "-", "experiment": t.name,
                         "measured": "not run", "value": None, "holds": "not run"})
        for c in t.claims or []:
            rows.append({"topic": t.title, "claim": c.claim, "experiment": c.experiment,
                         "measured": c.evidence, "value": c.value,
                         "holds": c.label})
    return rows


def summarise(topics: Sequence[Topic]) -> dict[str, int]:
    claims = [c for t in topics for c in t.claims or []]
    return {"claims": len(claims), "hold": sum(c.label == "yes" for c in claims),
            "fail": sum(c.label == "no" for c in claims),
            "not_shown": sum(c.label == "not shown" for c in claims),
            "unmeasured": sum(c.label == "not measurable" for c in claims),
            "topics_run": sum(t.claims is not None for t in topics),
            "topics_not_run": sum(t.claims is None for t in topics)}


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def headline(summary: Mapping[str, int]) -> str:
    return (f"{summary['hold']} of {summary['claims']} claims hold; not holding: "
            f"{summary['fail']}; not shown: {summary['not_shown']}; not measurable: "
            f"{summary['unmeasured']}. Topics run: "
            f"{summary['topics_run']}; not run: {summary['topics_not_run']}.")


def render_markdown(topics: Sequence[Topic], metrics: Sequence[Mapping[str, Any]],
                    summary: Mapping[str, int], curves: str | None,
                    envs: Environments) -> str:
    """Markdown beside the topic folders: figures are referenced by relative path."""
    rows = [{k: _md_cell(v) if isinstance(v, str) else v for k, v in r.items()}
            for r in claim_rows(topics)]
    blocks = ["# cnnlab: the lecture's claims, measured", headline(summary),
              "## Claims", RULE, markdown_table(rows, CLAIM_COLUMNS).rstrip(),
              "## Training runs",
              markdown_table(metrics, METRIC_COLUMNS).rstrip() if metrics
              else "No training metrics."]
    if curves:
        blocks.append(f"![validation accuracy per epoch]({curves})")
    blocks += ["## Environments", ENVIRONMENTS_NOTE,
               "\n".join(f"- {_md_cell(line)}" for line in envs.legend()),
               markdown_table(envs.rows(), envs.columns()).rstrip()]
    for t in topics:
        blocks.append(f"## {t.title}")
        if t.claims is None:
            blocks.append(f"Not run (no `{t.name}/claims.json`).")
            continue
        blocks.append("\n".join(f"- {c.label}: {c.claim} ({c.experiment}): "
                                f"{c.evidence}" for c in t.claims) or "No claims.")
        if t.tables:
            blocks.append("Tables: " + ", ".join(f"[{p.name}]({p.as_posix()})"
                                                 for p in t.tables))
        blocks += [f"![{p.stem}]({p.as_posix()})" for p in t.figures]
    return "\n\n".join(blocks) + "\n"


def img_tag(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.yes{background:#dff5df}.no{background:#fbdcdc}
.not-shown{background:#fff4d6}.not-run,.not-measurable{background:#eee;color:#666}
img{max-width:100%;margin:.5em 0}"""


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            text = _text(row.get(c))
            cls = f' class="{text.replace(" ", "-")}"' if c == "holds" else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_html(topics: Sequence[Topic], metrics: Sequence[Mapping[str, Any]],
                summary: Mapping[str, int], reports_dir: Path, curves: bytes | None,
                envs: Environments) -> str:
    """One self-contained page: every figure is embedded as base64 PNG."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             "<title>cnnlab report</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>cnnlab: the lecture's claims, measured</h1>",
             f"<p>{html.escape(headline(summary))}</p>",
             "<h2>Claims</h2>", f"<p>{html.escape(RULE)}</p>",
             html_table(claim_rows(topics), CLAIM_COLUMNS),
             "<h2>Training runs</h2>",
             html_table(metrics, METRIC_COLUMNS) if metrics else "<p>No training metrics.</p>"]
    if curves:
        parts.append(img_tag(curves, "validation accuracy per epoch"))
    parts += ["<h2 id='environments'>Environments</h2>", f"<p>{html.escape(ENVIRONMENTS_NOTE)}</p>",
              "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in envs.legend())
              + "</ul>", html_table(envs.rows(), envs.columns())]
    for t in topics:
        parts.append(f"<h2 id='{html.escape(t.name)}'>{html.escape(t.title)}</h2>")
        if t.claims is None:
            parts.append(f"<p class='not-run'>Not run (no {html.escape(t.name)}/claims.json)."
                         "</p>")
            continue
        parts.append("<ul>" + "".join(
            f"<li><b>{c.label}</b>: {html.escape(c.claim)} "
            f"({html.escape(c.experiment)}): {html.escape(c.evidence)}</li>"
            for c in t.claims) + "</ul>")
        for path in t.figures:
            parts.append(f"<figure>{img_tag((reports_dir / path).read_bytes(), path.stem)}"
                         f"<figcaption>{html.escape(path.as_posix())}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


@dataclass
class ReportConfig:
    """analysis.report (values in conf/analysis/report.yaml)."""

    topics: dict[str, str]  # folder under reports/ -> section title, in report order


def no_runs(name: str, metrics: Mapping[str, Any]) -> None:
    """No MLflow store asked: every training's environment is unknown."""
    return None


def build_report(cfg: Mapping[str, Any], reports_dir: Path, trainings: Mapping[str, Training],
                 out: Callable[[str], Path],
                 run_environment: Callable[[str, Mapping[str, Any]], Mapping[str, str] | None]
                 = no_runs) -> dict[str, Any]:
    """Write report.md, report.html and training_curves.png (when there are training
    histories) to the paths `out(name)` gives; returns the counts of claims that hold, fail
    and were not run. `run_environment(experiment, metrics)`: the environment of the run that
    wrote a training's metrics, or None when it is not known."""
    topics = collect_topics(reports_dir, cfg["topics"])
    metrics = collect_metrics(trainings)
    envs = Environments.of({THIS_REPORT: environment.gather(),
                            **{row["experiment"]: run_environment(row["experiment"], row)
                               for row in metrics}})
    histories = read_histories(trainings)
    curves = curves_png(histories) if histories else None
    summary = summarise(topics)
    if curves:
        out(CURVES_NAME).write_bytes(curves)
    write_text(out("report.md"),
               render_markdown(topics, metrics, summary, CURVES_NAME if curves else None, envs))
    write_text(out("report.html"),
               render_html(topics, metrics, summary, reports_dir, curves, envs))
    status = {t.name: ("not run" if t.claims is None else f"{len(t.claims)} claims")
              for t in topics}
    return {**summary, "topics": status}
