"""Tables and claim rows: the common currency of every results stage and of the report.

Each results stage writes `claims.json` beside its tables: a list of rows
{claim, experiment, evidence, value, holds, verdict}. The final report collects them all.

The verdict is one of VERDICTS: "yes" and "no" when the evidence carries them, "not shown"
when a difference was measured but is under the rule's threshold (see
cnnlab.analysis.comparison.paired_verdict), "not measurable" when nothing was measured.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cnnlab.core.errors import DataError
from cnnlab.core.io import write_json

VERDICTS = ("yes", "no", "not shown", "not measurable")


@dataclass(frozen=True)
class Claim:
    claim: str  # the lecture's statement, in its words
    experiment: str  # which stage/experiment measured it
    evidence: str  # the measured number(s), readable
    value: float | None  # the headline number, for plots and sorting
    holds: bool | None  # None: not shown or not measurable (the verdict says which)
    verdict: str = ""  # one of VERDICTS; "" (claims of exact checks): follows `holds`

    @property
    def label(self) -> str:
        """The verdict in words: `verdict` when given, else yes / no / not measurable."""
        return self.verdict or {True: "yes", False: "no", None: "not measurable"}[self.holds]


def write_claims(path: str | Path, claims: Iterable[Claim]) -> None:
    write_json(path, [asdict(c) for c in claims])


def read_claims(path: str | Path) -> list[Claim]:
    try:
        return [Claim(**row) for row in json.loads(Path(path).read_text())]
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: not a readable claims file ({exc})") from exc


def read_metrics(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metrics file is missing (run its train stage first)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(f"{path}: metrics file is not valid JSON ({exc})") from exc


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if value is None:
        return "-"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table of `rows`, one column per key in `columns`."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()
