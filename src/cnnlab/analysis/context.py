"""The speech claim in its own setting: short context windows, k frames cut from each word.

The lecture's advice, that speech filters should move along frequency only, comes from
frame-level phone recognition (Abdel-Hamid et al., 2014): the network sees a window of about
11-15 frames around one frame, and the time context is left to an HMM. In so short a window
a filter has almost nowhere to move along time. Here the frequency-sliding, time-sliding and
square-filter models of `train` are trained again on windows of k frames, for k from the
paper's short windows up to the whole word, and compared per k by the one verdict rule.

Each model keeps its own layers at every k: a kernel that spanned every frame of the clip spans
the window; other kernels and pools shrink to what is left of the window; the hidden layer is
resized so that every model at every k has the same parameter budget.
"""

from __future__ import annotations

import math
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cnnlab.analysis.comparison import RULE, binomial_var, paired_verdict
from cnnlab.core.claims import Claim, csv_text, markdown_table
from cnnlab.core.errors import ConfigError
from cnnlab.core.io import write_json, write_text
from cnnlab.data.prepared import SPLITS, PreparedData, Split, write_prepared

SETTINGS = {"unseen": "voices never heard in training",
            "cross_gender": "trained on one gender, tested on the other (mean of both ways)",
            "pitch_shift": "test clips shifted in pitch (mean over the non-zero shifts)"}


@dataclass
class ContextWindowsConfig:
    """analysis.context_windows (values in conf/analysis/context_windows.yaml)."""

    dataset: str  # the prepared audio dataset the windows are cut from
    frequency_only: str  # entries of `train`: their models and trainer settings, per window
    time_only: str
    image_cnn: str
    windows: list[int]  # k, frames per window
    max_windows: int  # windows per clip at most (as many as cover the word, up to this)
    seeds: list[int]  # every model at every k, with the same seeds (paired)
    max_epochs: int  # the experiments' trainer settings, with this many epochs
    batch_size: int  # and batches of this many windows
    params: int  # the parameter budget of every model at every k


# --- windows -------------------------------------------------------------------------------

def voiced_span(x: torch.Tensor) -> tuple[int, int]:
    """First and last frame of a clip (1 x F x T) louder than halfway between its quietest
    and loudest frame: the word, without the silence it was padded with."""
    level = x.mean(dim=(0, 1))
    loud = (level >= (level.min() + level.max()) / 2).nonzero().flatten()
    return int(loud[0]), int(loud[-1])


def window_starts(span: tuple[int, int], k: int, frames: int, max_windows: int) -> list[int]:
    """Starts of the windows of `k` frames on one clip: as many as cover its voiced span (at
    most `max_windows`), their centres spread evenly over the span, each inside the clip."""
    if k >= frames:
        return [0]
    first, length = span[0], span[1] - span[0] + 1
    count = max(1, min(max_windows, math.ceil(length / k)))
    centres = [first + length * (i + 0.5) / count for i in range(count)]
    return sorted({min(max(round(c - k / 2), 0), frames - k) for c in centres})


def cut_windows(x: torch.Tensor, y: torch.Tensor, k: int, max_windows: int
                ) -> tuple[Split, torch.Tensor]:
    """Every clip of N x 1 x F x T as its windows (M x 1 x F x k), each labelled with the
    clip's digit; also which clip each window came from (M)."""
    frames = x.shape[-1]
    if not 0 < k <= frames:
        raise ConfigError(f"analysis.context_windows.windows: {k} frames is not in 1..{frames} "
                          "(the clips' frames)")
    rows, starts = [], []
    for i in range(len(x)):
        for start in window_starts(voiced_span(x[i]), k, frames, max_windows):
            rows.append(i)
            starts.append(start)
    index = torch.tensor(rows, dtype=torch.int64)
    offsets = torch.tensor(starts, dtype=torch.int64)[:, None] + torch.arange(k)
    windows = torch.stack([x[i, ..., o] for i, o in zip(rows, offsets, strict=True)])
    return Split(windows.contiguous(), y[index].clone()), index


def windowed(splits: Mapping[str, Split], k: int, max_windows: int) -> dict[str, Split]:
    """Every split as windows, each cut from its own split's clips: a window never leaves its
    clip's split."""
    return {name: cut_windows(split.x, split.y, k, max_windows)[0]
            for name, split in splits.items()}


# --- models ----------------------------------------------------------------------------------

def _pair(value: Any) -> list[int]:
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


def window_model(model: Mapping[str, Any], frames: int, k: int) -> dict[str, Any]:
    """`model` (a convnet for clips of `frames` frames) for windows of `k` frames: kernels
    that spanned every frame span the window, other kernels and pools keep their size where
    the window leaves room and shrink where it does not. Needs stride 1 and no padding."""
    if model.get("name") != "convnet" or int(model.get("padding", 0)) != 0:
        raise ConfigError(f"analysis.context_windows: model {model.get('name')!r} with padding "
                          f"{model.get('padding')!r}: windows need a convnet without padding")
    width, layers = k, []
    for layer in model["conv"]:
        if _pair(layer.get("stride", 1)) != [1, 1]:
            raise ConfigError("analysis.context_windows: windows need conv strides of 1")
        kernel, pool = _pair(layer["kernel"]), _pair(layer.get("pool", 1))
        kernel[1] = width if kernel[1] == frames else min(kernel[1], width)
        width -= kernel[1] - 1
        pool[1] = pool[1] if width >= pool[1] else 1
        width //= pool[1]
        layers.append({**layer, "kernel": kernel, "pool": pool})
    return {**model, "conv": layers}


def with_budget(model: Mapping[str, Any], params: int, count: Any) -> dict[str, Any]:
    """`model` with its hidden layer resized so that it has about `params` parameters; the
    count is linear in the hidden width, so two counts (`count(cfg)`) solve it."""
    if len(model.get("hidden", [])) != 1:
        raise ConfigError("analysis.context_windows: a budget needs one hidden layer, got "
                          f"hidden={model.get('hidden')}")
    at = {h: count({**model, "hidden": [h]}) for h in (16, 32)}
    per_unit = (at[32] - at[16]) / 16
    width = round(16 + (params - at[16]) / per_unit)
    if width < 8:
        raise ConfigError(f"analysis.context_windows.params={params:,}: too small for "
                          f"{model['conv']} (its layers alone need about {at[16]:,})")
    return {**model, "hidden": [width]}


def window_models(train: Mapping[str, Mapping[str, Any]], names: Sequence[str], frames: int,
                  k: int, params: int, count: Any) -> dict[str, dict[str, Any]]:
    """Per experiment, its model for windows of `k` frames within the budget."""
    return {name: with_budget(window_model(train[name]["model"], frames, k), params, count)
            for name in names}


# --- the experiment ------------------------------------------------------------------------

def accuracy(model: torch.nn.Module, split: Split, batch: int = 2000) -> float:
    with torch.no_grad():
        right = sum(int((model(split.x[i:i + batch]).argmax(1) == split.y[i:i + batch]).sum())
                    for i in range(0, len(split), batch))
    return right / len(split)


def train_windows(train: Mapping[str, Mapping[str, Any]], models: Mapping[str, Mapping[str, Any]],
                  splits: Mapping[str, Split], classes: Sequence[str], cfg: Mapping[str, Any],
                  work: Path, label: str, more_tests: Sequence[Split] = ()
                  ) -> dict[str, dict[str, Any]]:
    """Each model of `models` (entries of `train` with their window models) on the windowed
    `splits`, once per seed. Per model: its seeds, parameter count and test accuracies, and
    per seed the mean accuracy over `more_tests` (the pitch-shifted test windows)."""
    from cnnlab.core.stage import validate
    from cnnlab.training.checkpoint import load_checkpoint
    from cnnlab.training.run import RunOutputs, TrainerConfig, train_experiment  # Lightning

    data_dir = work / "data"
    write_prepared(data_dir, dict(splits), {"classes": list(classes),
                                            "input_shape": list(splits["train"].x.shape[1:])})
    results: dict[str, dict[str, Any]] = {}
    for name, model in models.items():
        runs: dict[str, Any] = {"seeds": [], "test_acc": [], "more_acc": []}
        trainer = validate(train[name]["trainer"], TrainerConfig, f"train.{name}.trainer")
        for seed in cfg["seeds"]:
            exp = {"seed": int(seed), "register_model": False, "model": dict(model),
                   "trainer": {**trainer, "max_epochs": int(cfg["max_epochs"]),
                               "batch_size": int(cfg["batch_size"])}}
            checkpoint = work / "models" / f"{name}_seed{seed}.ckpt"
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            metrics = train_experiment(f"{name} {label} seed {seed}", exp, data_dir,
                                       RunOutputs(checkpoint, checkpoint.with_suffix(".csv")),
                                       evidence=False)
            runs["seeds"].append(int(seed))
            runs["test_acc"].append(float(metrics["test_acc"]))
            runs["params"] = int(metrics["params"])
            if more_tests:
                net, _ = load_checkpoint(checkpoint)
                runs["more_acc"].append(sum(accuracy(net, t) for t in more_tests)
                                        / len(more_tests))
        results[name] = runs
    return results


def sample_var(runs: Mapping[str, list[float]], a: str, b: str, n: int) -> float:
    """The test sample's variance of the mean difference of `a` and `b` on `n` clips (the
    windows of one clip are not independent: the clips are the sample)."""
    return binomial_var([statistics.fmean(runs[a]), statistics.fmean(runs[b])], n)


def judged(accuracies: Mapping[str, list[float]], a: str, b: str, variance: float
           ) -> dict[str, Any]:
    """Every model's accuracy per seed, and the rule on `a` - `b`."""
    result = paired_verdict(accuracies[a], accuracies[b], variance)
    return {"accuracy": dict(accuracies), "diff": result.diff, "se": result.se,
            "verdict": result.verdict}


def both_ways(train: Mapping[str, Mapping[str, Any]], models: Mapping[str, Mapping[str, Any]],
              genders: Mapping[str, Split], k: int, classes: Sequence[str],
              cfg: Mapping[str, Any], val_fraction: float, work: Path, pair: Sequence[str]
              ) -> dict[str, Any]:
    """Cross-gender on windows of `k` frames: trained on each gender's windows, tested on the
    other's; judged on the mean of both directions, as the cross_gender stage does."""
    from cnnlab.analysis.gender import DIRECTIONS, direction_splits

    ways = {}
    for way, (source, target) in DIRECTIONS.items():
        splits = direction_splits(genders[source], genders[target], val_fraction,
                                  int(cfg["seeds"][0]))
        runs = train_windows(train, models, windowed(splits, k, int(cfg["max_windows"])),
                             classes, cfg, work / way, f"{work.name} {way}")
        ways[way] = {name: r["test_acc"] for name, r in runs.items()}
    both = {name: [(a + b) / 2 for a, b in zip(*(ways[w][name] for w in DIRECTIONS), strict=True)]
            for name in models}
    variance = sum(sample_var(ways[way], *pair, len(genders[target]))
                   for way, (_, target) in DIRECTIONS.items()) / 4  # of a mean of two: a quarter
    return judged(both, *pair, variance)


def context_windows(cfg: Mapping[str, Any], train: Mapping[str, Mapping[str, Any]],
                    data: PreparedData, shifted: Mapping[str, torch.Tensor] | None,
                    genders: Mapping[str, Split] | None, val_fraction: float) -> dict[str, Any]:
    """Every model at every k, on every setting the data allows. `shifted`: the pitch-shifted
    test clips (None: not prepared); `genders`: each gender's clips (None: the data lacks
    one). Returns, per k, each model's window model and parameters, and per setting every
    model's accuracy per seed and the verdict on frequency-only against time-only."""
    from cnnlab.models import InputSpec, build_model, count_parameters

    names = [cfg["frequency_only"], cfg["time_only"], cfg["image_cnn"]]
    pair = names[:2]
    missing = [n for n in names if n not in train]
    if missing:
        raise ConfigError(f"analysis.context_windows: {missing} are not entries of train")
    frames, most = int(data.input_shape[-1]), int(cfg["max_windows"])
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cnnlab-context-") as tmp:
        for k in sorted({int(k) for k in cfg["windows"]}):
            shape = (*data.input_shape[:-1], min(k, frames))

            def count(model: Mapping[str, Any], shape: tuple[int, ...] = shape) -> int:
                return count_parameters(build_model(model, InputSpec(shape, len(data.classes))))

            models = window_models(train, names, frames, k, int(cfg["params"]), count)
            splits = windowed({s: getattr(data, s) for s in SPLITS}, k, most)
            shifts = list(windowed({str(s): Split(x, shifted["y"]) for s, x in zip(
                shifted["semitones"].tolist(), shifted["x"], strict=True) if s}, k, most
            ).values()) if shifted is not None else []
            runs = train_windows(train, models, splits, data.classes, cfg,
                                 Path(tmp) / f"k={k}", f"k={k}", shifts)
            unseen = {n: runs[n]["test_acc"] for n in names}
            result: dict[str, Any] = {
                "models": models, "params": {n: runs[n]["params"] for n in names},
                "windows": {s: len(split) for s, split in splits.items()},
                "unseen": judged(unseen, *pair, sample_var(unseen, *pair, len(data.test)))}
            if shifts:
                moved = {n: runs[n]["more_acc"] for n in names}
                result["pitch_shift"] = judged(moved, *pair,
                                               sample_var(moved, *pair, len(data.test)))
            if genders:
                result["cross_gender"] = both_ways(train, models, genders, k, data.classes,
                                                   cfg, val_fraction, Path(tmp) / f"k={k}", pair)
            out[str(k)] = result
    return out


# --- what the stage writes -----------------------------------------------------------------

ORIGIN = ("The lecture's advice comes from frame-level phone recognition (Abdel-Hamid et al., "
          "2014), where the network sees a short window of about 11-15 frames around one frame "
          "and the time context is left to an HMM; the whole-word comparison of audio_results "
          "is not that setting.")
FIGURE = "context_windows.png"


def window_claim(k: int, result: Mapping[str, Any], freq: str, time_: str, unseen: bool
                 ) -> Claim:
    """The speech claim on windows of `k` frames, on voices never heard in training."""
    claim = (f"On windows of {k} frames, filters that move along frequency only beat filters "
             "that move along time only on voices never heard in training")
    experiment = f"{freq} vs {time_}, k={k}"
    params = ", ".join(f"{n} {p:,}" for n, p in result["params"].items())
    if not unseen:
        return Claim(claim, experiment, "not judged: the test speakers are heard in training",
                     None, None)
    r = result["unseen"]
    holds = {"yes": True, "no": False}.get(r["verdict"])
    evidence = (f"test accuracy over {len(r['accuracy'][freq])} seeds "
                f"{statistics.fmean(r['accuracy'][freq]):.2%} vs "
                f"{statistics.fmean(r['accuracy'][time_]):.2%}, paired difference "
                f"{r['diff']:+.2%} ± {r['se']:.2%}; params {params}")
    return Claim(claim, experiment, evidence, r["diff"], holds, r["verdict"])


def summary_sentence(results: Mapping[str, Any], setting: str) -> str:
    """Where frequency-only beat time-only in one setting, in words."""
    verdicts = {int(k): r[setting]["verdict"] for k, r in results.items() if setting in r}
    if not verdicts:
        return f"{SETTINGS[setting]}: not measurable on this data."
    wins = [k for k, v in verdicts.items() if v == "yes"]
    losses = [k for k, v in verdicts.items() if v == "no"]
    words = [f"frequency-only wins at k = {wins}" if wins else "frequency-only never wins"]
    if losses:
        words.append(f"time-only wins at k = {losses}")
    ties = sorted(set(verdicts) - set(wins) - set(losses))
    if ties:
        words.append(f"no difference shown at k = {ties}")
    return f"{SETTINGS[setting]}: {'; '.join(words)}."


def table_rows(results: Mapping[str, Any], names: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for k, r in results.items():
        for setting in SETTINGS:
            if setting not in r:
                continue
            s = r[setting]
            rows.append({"k": int(k), "setting": setting,
                         **{n: f"{100 * statistics.fmean(s['accuracy'][n]):.1f}" for n in names},
                         "freq - time %": f"{100 * s['diff']:+.1f} ± {100 * s['se']:.1f}",
                         "verdict": s["verdict"]})
    return rows


def curves_csv(results: Mapping[str, Any], setting: str, names: Sequence[str]) -> str:
    """k, experiment, accuracy (mean over seeds): one line per model in `dvc plots`."""
    return csv_text([{"k": int(k), "experiment": n,
                      "accuracy": statistics.fmean(r[setting]["accuracy"][n])}
                     for n in names for k, r in results.items() if setting in r],
                    ["k", "experiment", "accuracy"])


def save_figure(results: Mapping[str, Any], names: Sequence[str], path: Path, title: str) -> Path:
    """Accuracy against k, one panel per setting, one line per model (seeds' range shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [s for s in SETTINGS if any(s in r for r in results.values())]
    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.8), sharey=True,
                             squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        ks = [int(k) for k, r in results.items() if setting in r]
        for name in names:
            accs = [results[str(k)][setting]["accuracy"][name] for k in ks]
            line, = ax.plot(ks, [statistics.fmean(a) for a in accs], marker="o", label=name)
            ax.fill_between(ks, [min(a) for a in accs], [max(a) for a in accs],
                            color=line.get_color(), alpha=0.15)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("window k (frames)")
        ax.set_title(SETTINGS[setting], fontsize=8, wrap=True)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (windows)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_context_windows(cfg: Mapping[str, Any], train: Mapping[str, Mapping[str, Any]],
                          cross_gender: Mapping[str, Any], prepared: Path, report_dir: Path,
                          plots_dir: Path) -> tuple[dict[str, Any], list[Claim]]:
    """Run the experiment on `prepared/<cfg.dataset>` and write its table, curve and CSVs;
    returns the metrics and the per-k claims."""
    from cnnlab.analysis.gender import clip_speakers, groups, unseen_speakers
    from cnnlab.data.audio.shift import load_shifted
    from cnnlab.data.prepared import load_prepared

    data_dir = prepared / cfg["dataset"]
    data = load_prepared(data_dir)
    genders: dict[str, Split] | None = groups(data, clip_speakers(data_dir), cross_gender)
    if not all(len(g) for g in genders.values()):
        genders = None
    results = context_windows(cfg, train, data, load_shifted(data_dir, data.manifest), genders,
                              float(cross_gender["val_fraction"]))
    names = [cfg["frequency_only"], cfg["time_only"], cfg["image_cnn"]]
    unseen = unseen_speakers(data.manifest)
    claims = [window_claim(int(k), r, *names[:2], unseen) for k, r in results.items()]
    for setting in SETTINGS:
        if any(setting in r for r in results.values()):
            write_text(plots_dir / f"{setting}.csv", curves_csv(results, setting, names))
    save_figure(results, names, report_dir / FIGURE,
                f"{cfg['dataset']}: accuracy against the window's length")
    lines = ["# Speech: the frequency claim against the window's length", "", ORIGIN, "",
             *(f"- {summary_sentence(results, s)}" for s in SETTINGS), "",
             f"Each model is trained on windows of k frames cut from every clip ({cfg['max_windows']}"
             " at most per clip, spread over the word), labelled with the clip's digit, for "
             f"{cfg['max_epochs']} epochs with its experiment's trainer settings; every model at "
             f"every k has about {cfg['params']:,} parameters. Accuracy is over test windows, "
             "mean over the seeds; the rule's test sample is the clips.", "",
             markdown_table(table_rows(results, names), ["k", "setting", *names,
                                                         "freq - time %", "verdict"]),
             "Parameters per k: " + "; ".join(
                 f"k={k}: " + ", ".join(f"{n} {p:,}" for n, p in r["params"].items())
                 for k, r in results.items()), "",
             "## Claims", "", RULE, "",
             *(f"- **{c.claim}**: {c.label}. {c.evidence}." for c in claims), "",
             f"![accuracy against window length]({FIGURE})"]
    write_text(report_dir / "context_windows.md", "\n".join(lines) + "\n")
    write_json(report_dir / "results.json", results)
    metrics = {k: {"params": r["params"], **{s: {"diff": r[s]["diff"], "se": r[s]["se"],
                                                 "verdict": r[s]["verdict"],
                                                 **{n: statistics.fmean(r[s]["accuracy"][n])
                                                    for n in names}}
                                             for s in SETTINGS if s in r}}
               for k, r in results.items()}
    return {"windows": metrics, "cross_gender_measured": genders is not None}, claims
