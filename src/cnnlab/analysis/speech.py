"""The speech results: which way should a spectrogram filter move?

The lecture: a CNN for speech takes the spectrogram as an image, and its filters should move
along the frequency axis only, since the same word said by a higher or lower voice is mostly
a shift in frequency. The claim is tested the way it is stated: models whose filters move
along one axis only (audio_freq_slide, audio_time_slide), compared on voices never heard in
training, on voices of the other gender (stage cross_gender) and on test clips shifted in
pitch. Every comparison pairs the models' seeds and is judged by the rule of
cnnlab.analysis.comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.analysis import pitch
from cnnlab.analysis.comparison import (
    COLUMNS,
    RULE,
    binomial_var,
    comparable,
    domain_runs,
    paired_claim,
    paired_values,
    read_manifest,
    results_rows,
    seed_summary,
    with_seeds,
)
from cnnlab.analysis.gender import DIRECTIONS, unseen_speakers
from cnnlab.core.claims import Claim, markdown_table, read_metrics
from cnnlab.core.io import write_json, write_text
from cnnlab.data.audio.shift import load_shifted

EXAMPLE_PICTURES = ("examples_classes.png", "examples_speakers.png")  # made by prepare_audio
FIGURE = "pitch_shift.png"


@dataclass
class SpeechResultsConfig:
    """analysis.audio_results (values in conf/analysis/audio_results.yaml)."""

    dataset: str  # the prepared dataset: its entries of `train` make the table
    frequency_only: str  # the entries of `train` the claims compare
    time_only: str
    image_cnn: str
    dense: str
    seeds_stage: str  # the stage (models/<seeds_stage>/) whose further seeds pair with train@
    params_tolerance: float  # "comparable" parameter counts: within this fraction


@dataclass(frozen=True)
class SpeechEvidence:
    """What the speech claims are judged on."""

    metrics: Mapping[str, Mapping[str, Any]]  # each experiment's own seed (train@)
    runs: Mapping[str, Mapping[str, list]]  # every seed's test accuracy
    test_size: int
    unseen_speakers: bool
    curves: Mapping[str, Mapping[str, Any]]  # accuracy by pitch shift ({} when not prepared)
    cross_gender: Mapping[str, Any]  # metrics/cross_gender.json ({} when not run)


FREQ_CLAIM = ("Filters that move along frequency only suit speech: on voices never heard in "
              "training they beat filters that move along time only")
PITCH_CLAIM = ("Filters that move along frequency only lose less accuracy than filters that "
               "move along time only when the voice shifts in frequency (test clips "
               "pitch-shifted)")
GENDER_CLAIM = ("Trained on one gender and tested on the other, filters that move along "
                "frequency only beat filters that move along time only")
IMAGE_CLAIM = "A CNN that takes the spectrogram as an image beats a dense network on it"


def _missing(claim: str, experiment: str, why: str) -> Claim:
    return Claim(claim=claim, experiment=experiment, evidence=why, value=None, holds=None)


def frequency_claim(ev: SpeechEvidence, freq: str, time_: str, tolerance: float) -> Claim:
    """Unseen voices: frequency-sliding against time-sliding test accuracy, paired seeds."""
    experiment = f"{freq} vs {time_}"
    if freq not in ev.runs or time_ not in ev.runs:
        return _missing(FREQ_CLAIM, experiment, f"{freq} or {time_} was not run")
    a, b = paired_values(ev.runs[freq], ev.runs[time_])
    measured = (f"frequency-only vs time-only on {ev.test_size} clips of "
                f"{'unseen' if ev.unseen_speakers else 'known'} speakers; params "
                f"{ev.metrics[freq]['params']:,} vs {ev.metrics[time_]['params']:,}")
    if not ev.unseen_speakers:
        return _missing(FREQ_CLAIM, experiment, f"{measured}: not judged (the test speakers "
                                                "are heard in training)")
    if not comparable(ev.metrics[freq], ev.metrics[time_], tolerance):
        return _missing(FREQ_CLAIM, experiment, f"{measured}: not comparable (more than "
                                                f"{tolerance:.0%} apart)")
    return paired_claim(FREQ_CLAIM, experiment, a, b, binomial_var(
        [sum(a) / len(a), sum(b) / len(b)], ev.test_size), measured)


def pitch_claim(ev: SpeechEvidence, freq: str, time_: str) -> Claim:
    """The drop under pitch shift: time-sliding's less frequency-sliding's, paired seeds."""
    experiment = f"{freq} vs {time_}, pitch shift"
    if freq not in ev.curves or time_ not in ev.curves:
        return _missing(PITCH_CLAIM, experiment, "no pitch-shifted test set or model")
    curves = {name: {**ev.curves[name], "drop": pitch.drops(ev.curves[name])}
              for name in (freq, time_)}
    a, b = paired_values(curves[time_], curves[freq], "drop")
    grid = curves[freq]["semitones"]
    mean = {name: sum(c["drop"]) / len(c["drop"]) for name, c in curves.items()}
    # each drop is an accuracy unshifted less a mean accuracy shifted, each on the test clips
    unshifted = {name: pitch.mean_curve(c)[grid.index(0)] for name, c in curves.items()}
    levels = [x for name in (freq, time_) for x in (unshifted[name], unshifted[name] - mean[name])]
    measured = (f"accuracy lost at shifts {[s for s in grid if s]} semitones: frequency-only "
                f"{mean[freq]:.2%}, time-only {mean[time_]:.2%}; time-only's loss less "
                "frequency-only's")
    return paired_claim(PITCH_CLAIM, experiment, a, b, binomial_var(levels, ev.test_size),
                        measured)


def gender_claim(ev: SpeechEvidence, freq: str, time_: str) -> Claim:
    """Cross-gender: the mean accuracy of both directions, paired seeds."""
    experiment = f"{freq} vs {time_}, cross-gender"
    cg = ev.cross_gender
    if not cg.get("measured"):
        return _missing(GENDER_CLAIM, experiment, cg.get("reason", "cross_gender was not run"))
    if any(name not in cg[d] for d in DIRECTIONS for name in (freq, time_)):
        return _missing(GENDER_CLAIM, experiment, f"cross_gender did not train {freq} and {time_}")
    mean = {(d, n): sum(cg[d][n]["test_acc"]) / len(cg[d][n]["test_acc"])
            for d in DIRECTIONS for n in (freq, time_)}
    both = {n: {"seeds": cg["male_to_female"][n]["seeds"],
                "test_acc": [(x + y) / 2 for x, y in zip(cg["male_to_female"][n]["test_acc"],
                                                         cg["female_to_male"][n]["test_acc"],
                                                         strict=True)]}
            for n in (freq, time_)}
    a, b = paired_values(both[freq], both[time_])
    tested_on = {"male_to_female": cg["clips"]["female"], "female_to_male": cg["clips"]["male"]}
    test_var = sum(binomial_var([mean[d, freq], mean[d, time_]], tested_on[d])
                   for d in DIRECTIONS) / 4  # the variance of a mean of two directions
    by_direction = "; ".join(f"{d.replace('_', ' ')} {mean[d, freq]:.2%} vs {mean[d, time_]:.2%}"
                             for d in DIRECTIONS)
    measured = (f"frequency-only vs time-only, mean of both directions ({by_direction}; "
                f"{cg['clips']['male']} male and {cg['clips']['female']} female clips)")
    return paired_claim(GENDER_CLAIM, experiment, a, b, test_var, measured)


def image_claim(ev: SpeechEvidence, image: str, dense: str) -> Claim:
    experiment = f"{image} vs {dense}"
    if image not in ev.runs or dense not in ev.runs:
        return _missing(IMAGE_CLAIM, experiment, f"{image} or {dense} was not run")
    a, b = paired_values(ev.runs[image], ev.runs[dense])
    return paired_claim(IMAGE_CLAIM, experiment, a, b, binomial_var(
        [sum(a) / len(a), sum(b) / len(b)], ev.test_size),
        f"2-D CNN vs dense on {ev.test_size} test clips; params "
        f"{ev.metrics[image]['params']:,} vs {ev.metrics[dense]['params']:,}")


def speech_claims(ev: SpeechEvidence, cfg: Mapping[str, Any]) -> list[Claim]:
    """The lecture's claims about speech, each judged by the paired-seed rule."""
    freq, time_ = cfg["frequency_only"], cfg["time_only"]
    return [frequency_claim(ev, freq, time_, float(cfg["params_tolerance"])),
            pitch_claim(ev, freq, time_), gender_claim(ev, freq, time_),
            image_claim(ev, cfg["image_cnn"], cfg["dense"])]


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
                         paths: Any, out_dir: Path
                         ) -> tuple[dict[str, Any], list[Claim], dict[str, dict[str, Any]]]:
    """Every experiment of `train` on cfg.dataset in one table (mean ± SE over seeds), the
    pitch-shift curves and the speech claims. `paths`: the stage's Paths.

    Writes `out_dir/{results.md, results.json, pitch_shift.png}` and copies the example
    spectrograms; returns the metrics, the claims and the pitch-shift curves ({} without a
    shifted test set).
    """
    dataset = cfg["dataset"]
    data_dir = paths.prepared / dataset
    metrics, runs = domain_runs(train, dataset, paths.metrics)
    manifest = read_manifest(data_dir / "manifest.json", "prepare_audio")
    test_size = int(manifest.get("sizes", {}).get("test", 0))
    shifted = load_shifted(data_dir, manifest)
    curves = pitch.pitch_curves(runs, paths.models, paths.models / cfg["seeds_stage"],
                                shifted) if shifted is not None else {}
    cross = paths.metrics / "cross_gender.json"
    ev = SpeechEvidence(metrics, runs, test_size, unseen_speakers(manifest), curves,
                        read_metrics(cross) if cross.is_file() else {})
    claims = speech_claims(ev, cfg)
    rows = with_seeds(results_rows(metrics), runs, test_size)
    figure = pitch.save_figure(curves, out_dir / FIGURE, f"{dataset}: accuracy against pitch "
                               "shift of the test clips") if curves else None
    lines = [
        "# Speech: which way should a spectrogram filter move?", "",
        f"Input: {manifest.get('input_shape')} (channel x frequency x time) "
        f"{manifest.get('features', {}).get('kind', '')} spectrograms at "
        f"{manifest.get('sample_rate')} Hz; {split_description(manifest)}.", "",
        markdown_table(rows, COLUMNS), "",
        "`mean ± SE %`: test accuracy over the seeds (the experiment's own and those of "
        f"`{cfg['seeds_stage']}`), the error combining the seeds' spread with the test "
        "sample's binomial error; `test acc %`: the experiment's own seed. Seconds per epoch "
        "are wall time on a shared CPU.", "",
        "## Claims", "", RULE, "",
    ]
    lines += [f"- **{c.claim}**: {c.label}. {c.evidence}." for c in claims]
    if figure:
        lines += ["", f"![accuracy against pitch shift]({FIGURE})"]
    for name in EXAMPLE_PICTURES:  # the spectrograms the models saw, beside the table
        source = data_dir / name
        if source.is_file():
            (out_dir / name).write_bytes(source.read_bytes())
            lines += ["", f"![{name}]({name})"]
    write_text(out_dir / "results.md", "\n".join(lines) + "\n")
    write_json(out_dir / "results.json", {"split": manifest.get("split"),
                                          "source": manifest.get("source"),
                                          "input_shape": manifest.get("input_shape"),
                                          "rows": rows, "pitch_shift": curves})
    summary = seed_summary(metrics, runs, test_size)
    for name, curve in curves.items():
        summary[name]["pitch_drop"] = pitch.drops(curve)
    return summary, claims, curves
