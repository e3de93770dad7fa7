"""The speech results: which way should a spectrogram filter move?

The lecture: a CNN for speech takes the spectrogram as an image, and its filters should move
along the frequency axis only, since the same word said by a higher or lower voice is mostly
a shift in frequency. We compare four models of comparable size on speakers (voices) that
training never heard: k x 1 filters (frequency only), 1 x k (time only), k x k, and dense.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.core.claims import Claim, markdown_table, read_metrics, write_claims
from cnnlab.core.errors import DataError
from cnnlab.core.io import atomic_path, write_json, write_text


@dataclass(frozen=True)
class SpeechExperiment:
    role: str  # freq | time | full2d | dense
    name: str  # the entry of `train` (and the metrics file name)
    model: str  # what it is, for the table


EXPERIMENTS = (
    SpeechExperiment("freq", "audio_freq", "k x 1 filters and pools: move along frequency only"),
    SpeechExperiment("time", "audio_time", "1 x k filters and pools: move along time only"),
    SpeechExperiment("full2d", "audio_full2d", "k x k filters and pools: the spectrogram as "
                                               "any image"),
    SpeechExperiment("dense", "audio_dense", "dense layers on the flattened spectrogram"),
)
EXAMPLE_PICTURES = ("examples_classes.png", "examples_speakers.png")  # made by prepare_audio
PARAMS_TOLERANCE = 0.25  # "comparable" parameter counts: within 25% of each other


@dataclass(frozen=True)
class SpeechResults:
    rows: list[dict[str, Any]]
    claims: list[Claim]
    files: list[Path]


def results_rows(metrics: Mapping[str, Mapping[str, Any]],
                 experiments: tuple[SpeechExperiment, ...] = EXPERIMENTS) -> list[dict[str, Any]]:
    """One table row per experiment that has metrics, in `experiments` order."""
    rows = []
    for exp in experiments:
        if exp.name not in metrics:
            continue
        m = metrics[exp.name]
        rows.append({
            "experiment": exp.name,
            "model": exp.model,
            "test acc %": round(100 * float(m["test_acc"]), 2),
            "params": int(m["params"]),
            "s/epoch": m.get("seconds_per_epoch"),
            "fit s": m.get("fit_seconds"),
            "epochs": m.get("epochs"),
        })
    return rows


def _se_of_difference(a: float, b: float, n: int) -> float:
    """Standard error of the difference of two accuracies on n test clips (as independent)."""
    return math.sqrt((a * (1 - a) + b * (1 - b)) / n) if n else float("nan")


def _compare(a: Mapping[str, Any], b: Mapping[str, Any], n: int, names: tuple[str, str],
             test_set: str) -> tuple[float, str]:
    diff = float(a["test_acc"]) - float(b["test_acc"])
    se = _se_of_difference(float(a["test_acc"]), float(b["test_acc"]), n)
    ratio = a["params"] / b["params"]
    return diff, (f"{names[0]} {a['test_acc']:.2%} vs {names[1]} {b['test_acc']:.2%} on {n} clips "
                  f"of {test_set} (difference {diff:+.2%}, about {diff / se:+.1f} standard "
                  f"errors); params {a['params']:,} vs {b['params']:,} (ratio {ratio:.2f})")


def speech_claims(metrics: Mapping[str, Mapping[str, Any]], test_size: int,
                  unseen_speakers: bool = True, tolerance: float = PARAMS_TOLERANCE
                  ) -> list[Claim]:
    """The lecture's claims about speech, judged on the measured metrics (None: not run).

    The frequency claim is about voices: judged only when the test speakers are unseen.
    """
    test_set = "unseen speakers" if unseen_speakers else "held-out takes of known speakers"
    by_role = {e.role: metrics.get(e.name) for e in EXPERIMENTS}
    freq, time_, dense = by_role["freq"], by_role["time"], by_role["dense"]
    if freq and time_:
        diff, evidence = _compare(freq, time_, test_size, ("frequency-only", "time-only"),
                                  test_set)
        comparable = abs(freq["params"] / time_["params"] - 1) <= tolerance
        holds = bool(diff >= 0) if comparable and unseen_speakers else None
        if not comparable:
            evidence += f": not comparable (more than {tolerance:.0%} apart)"
        if not unseen_speakers:
            evidence += ": not judged (the test speakers are heard in training)"
    else:
        diff, evidence, holds = None, "audio_freq or audio_time was not run", None
    claims = [Claim(
        claim="Filters that move along frequency only suit speech: on voices never heard in "
              "training they do at least as well as filters that move along time only",
        experiment="audio_freq vs audio_time", evidence=evidence,
        value=diff, holds=holds)]
    convs = [(e.name, metrics[e.name]) for e in EXPERIMENTS
             if e.role != "dense" and e.name in metrics]
    if convs and dense:
        best_name, best = max(convs, key=lambda item: float(item[1]["test_acc"]))
        diff, evidence = _compare(best, dense, test_size, (best_name, "dense"), test_set)
        claims.append(Claim(
            claim="A CNN that takes the spectrogram as an image beats a dense network on it",
            experiment=f"{best_name} vs audio_dense", evidence=evidence, value=diff,
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


def write_speech_results(metrics_dir: Path, manifest_path: Path, out_dir: Path,
                         experiments: tuple[SpeechExperiment, ...] = EXPERIMENTS
                         ) -> SpeechResults:
    """Read metrics/<experiment>.json of every experiment, write the tables and claims."""
    metrics = {e.name: read_metrics(metrics_dir / f"{e.name}.json") for e in experiments}
    try:
        manifest = json.loads(Path(manifest_path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{manifest_path}: cannot read the prepared audio manifest ({exc})") from exc
    test_size = int(manifest.get("sizes", {}).get("test", 0))
    rows = results_rows(metrics, experiments)
    speakers = manifest.get("split", {}).get("speakers", {})
    unseen = bool(speakers.get("test")) and not set(speakers["test"]) & set(
        speakers.get("train", []))
    claims = speech_claims(metrics, test_size, unseen)
    split = split_description(manifest)
    columns = ["experiment", "model", "test acc %", "params", "s/epoch",
               "fit s", "epochs"]
    lines = [
        "# Speech: which way should a spectrogram filter move?", "",
        f"Input: {manifest.get('input_shape')} (channel x frequency x time) "
        f"{manifest.get('features', {}).get('kind', '')} spectrograms at "
        f"{manifest.get('sample_rate')} Hz; {split}.", "",
        markdown_table(rows, columns), "",
        "Seconds per epoch are wall time on the machine that ran the stage (a shared CPU "
        "makes them noisy); compare them within one run.", "",
        "## Claims", "",
    ]
    for c in claims:
        verdict = {True: "holds", False: "does not hold", None: "not measured"}[c.holds]
        lines.append(f"- **{c.claim}**: {verdict}. {c.evidence}.")
    out_dir = Path(out_dir)
    files = [out_dir / "results.md", out_dir / "results.json", out_dir / "claims.json"]
    for name in EXAMPLE_PICTURES:  # the spectrograms the models saw, beside the table
        source = Path(manifest_path).parent / name
        if source.is_file():
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(source, tmp)
            files.append(out_dir / name)
            lines.append("")
            lines.append(f"![{name}]({name})")
    write_text(files[0], "\n".join(lines) + "\n")
    write_json(files[1], {"split": manifest.get("split"), "source": manifest.get("source"),
                          "input_shape": manifest.get("input_shape"), "rows": rows})
    write_claims(files[2], claims)
    return SpeechResults(rows, claims, files)
