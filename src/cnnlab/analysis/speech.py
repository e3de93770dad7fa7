"""The speech results: which way should a spectrogram filter move?

The lecture: a CNN for speech takes the spectrogram as an image, and its filters should move
along the frequency axis only, since the same word said by a higher or lower voice is mostly
a shift in frequency. Every model trained on the audio dataset is compared
on speakers (voices) that training never heard; the claims name which models they compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.analysis.comparison import (
    COLUMNS,
    comparable,
    compare,
    domain_metrics,
    read_manifest,
    results_rows,
)
from cnnlab.core.claims import Claim, markdown_table
from cnnlab.core.io import write_json, write_text

EXAMPLE_PICTURES = ("examples_classes.png", "examples_speakers.png")  # made by prepare_audio


@dataclass
class SpeechResultsConfig:
    """analysis.audio_results (values in conf/analysis/audio_results.yaml)."""

    dataset: str  # the prepared dataset: its entries of `train` make the table
    frequency_only: str  # the entries of `train` the claims compare
    time_only: str
    dense: str
    params_tolerance: float  # "comparable" parameter counts: within this fraction


def speech_claims(metrics: Mapping[str, Mapping[str, Any]], cfg: Mapping[str, Any],
                  test_size: int, unseen_speakers: bool = True) -> list[Claim]:
    """The lecture's claims about speech, judged on the measured metrics (None: not run).

    The frequency claim is about voices: judged only when the test speakers are unseen.
    """
    test_set = "clips of unseen speakers" if unseen_speakers else \
        "clips of held-out takes of known speakers"
    tolerance = float(cfg["params_tolerance"])
    freq, time_ = metrics.get(cfg["frequency_only"]), metrics.get(cfg["time_only"])
    dense = metrics.get(cfg["dense"])
    if freq and time_:
        diff, evidence = compare(freq, time_, test_size, ("frequency-only", "time-only"),
                                 test_set)
        fair = comparable(freq, time_, tolerance)
        holds = bool(diff >= 0) if fair and unseen_speakers else None
        if not fair:
            evidence += f": not comparable (more than {tolerance:.0%} apart)"
        if not unseen_speakers:
            evidence += ": not judged (the test speakers are heard in training)"
    else:
        diff, evidence, holds = None, f"{cfg['frequency_only']} or {cfg['time_only']} was not run", None
    claims = [Claim(
        claim="Filters that move along frequency only suit speech: on voices never heard in "
              "training they do at least as well as filters that move along time only",
        experiment=f"{cfg['frequency_only']} vs {cfg['time_only']}", evidence=evidence,
        value=diff, holds=holds)]
    convs = [(name, m) for name, m in metrics.items() if name != cfg["dense"]]
    if convs and dense:
        best_name, best = max(convs, key=lambda item: float(item[1]["test_acc"]))
        diff, evidence = compare(best, dense, test_size, (best_name, "dense"), test_set)
        claims.append(Claim(
            claim="A CNN that takes the spectrogram as an image beats a dense network on it",
            experiment=f"{best_name} vs {cfg['dense']}", evidence=evidence, value=diff,
            holds=bool(diff > 0)))
    return claims


def split_description(manifest: Mapping[str, Any]) -> str:
    """Which speakers the test set holds, in words, from the prepared manifest."""
    split = manifest.get("split", {})
    speakers = split.get("speakers", {})
    test = speakers.get("test", [])
    source = manifest.get("source", "?")
    sizes = manifest.get("sizes", {})
    if split.get("by") == "take":
        return (f"source `{source}`, split by take (test takes {split.get('test_takes')}): "
                f"the test speakers {test} are also heard in training; "
                f"{sizes.get('train')} train / {sizes.get('val')} val / {sizes.get('test')} "
                "test clips")
    unseen = sorted(set(test) - set(speakers.get("train", [])))
    return (f"source `{source}`, split by speaker: {len(unseen)} test speakers never heard in "
            f"training ({', '.join(unseen)}); {sizes.get('train')} train / {sizes.get('val')} "
            f"val / {sizes.get('test')} test clips")


def write_speech_results(cfg: Mapping[str, Any], train: Mapping[str, Mapping[str, Any]],
                         metrics_dir: Path, data_dir: Path, out_dir: Path
                         ) -> tuple[dict[str, Any], list[Claim]]:
    """Every experiment of `train` on cfg.dataset in one table, and the speech claims.

    Writes `out_dir/{results.md, results.json}` and copies the example spectrograms.
    """
    metrics = domain_metrics(train, cfg["dataset"], metrics_dir)
    manifest = read_manifest(data_dir / "manifest.json", "prepare_audio")
    test_size = int(manifest.get("sizes", {}).get("test", 0))
    rows = results_rows(metrics)
    speakers = manifest.get("split", {}).get("speakers", {})
    unseen = bool(speakers.get("test")) and not set(speakers["test"]) & set(
        speakers.get("train", []))
    claims = speech_claims(metrics, cfg, test_size, unseen)
    lines = [
        "# Speech: which way should a spectrogram filter move?", "",
        f"Input: {manifest.get('input_shape')} (channel x frequency x time) "
        f"{manifest.get('features', {}).get('kind', '')} spectrograms at "
        f"{manifest.get('sample_rate')} Hz; {split_description(manifest)}.", "",
        markdown_table(rows, COLUMNS), "",
        "Seconds per epoch are wall time on the machine that ran the stage (a shared CPU "
        "makes them noisy); compare them within one run.", "",
        "## Claims", "",
    ]
    for c in claims:
        verdict = {True: "holds", False: "does not hold", None: "not measured"}[c.holds]
        lines.append(f"- **{c.claim}**: {verdict}. {c.evidence}.")
    for name in EXAMPLE_PICTURES:  # the spectrograms the models saw, beside the table
        source = data_dir / name
        if source.is_file():
            (out_dir / name).write_bytes(source.read_bytes())
            lines += ["", f"![{name}]({name})"]
    write_text(out_dir / "results.md", "\n".join(lines) + "\n")
    write_json(out_dir / "results.json", {"split": manifest.get("split"),
                                          "source": manifest.get("source"),
                                          "input_shape": manifest.get("input_shape"),
                                          "rows": rows})
    return {name: {"test_acc": m["test_acc"], "params": m["params"]}
            for name, m in metrics.items()}, claims
