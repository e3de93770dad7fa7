"""Spoken words as spectrogram images: frequency on the height axis, time on the width axis.

Two sources end in the same prepared format (float32 N x 1 x F x T):

- `synthetic` (offline default): the class words said by eSpeak NG in many voice variants,
  accents, speaking rates and pitches, each clip perturbed by seeded noise, gain and shift.
  A "speaker" is an eSpeak variant (`f3`, `m3`, `klatt`, `whisper`, ...); split by speaker,
  no variant of the test set is heard in training or validation, in any accent.
- `folder`: any folder of WAV files, labels from `{label}_{speaker}_{take}.wav` (FSDD) or
  from one sub-folder per label (Speech Commands), split by speaker or by take. With
  `mix_synthetic`, the synthetic voices join its training split (more voices to learn
  speaker invariance from; validation and test stay real).

Every clip is resampled to one rate, padded or cropped (centred) to a fixed duration, turned
into a (mel) spectrogram in dB and normalised. Bad files are a DataError naming the file, or
with `on_bad_file: skip` a warning and a count in the manifest.

The test clips are also written shifted in pitch (`test_pitch_shift.pt`, see
cnnlab.data.audio.shift), so that every model can be evaluated on higher and lower voices.

`AudioConfig` is the schema of `data.audio`: types only, the values live in
conf/data/audio.yaml. `build` and `prepare` expect a section checked against it (every key
present); they check the allowed values themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.core.io import save_torch, sha256_file, write_json
from cnnlab.data.audio import shift
from cnnlab.data.audio.checks import choice
from cnnlab.data.audio.figures import save_examples
from cnnlab.data.audio.perturb import perturb_clips
from cnnlab.data.audio.spectrogram import NORMALIZE, Spectrograms, normalize
from cnnlab.data.audio.split import split_indices
from cnnlab.data.audio.synthetic import synthetic_clips
from cnnlab.data.audio.wav import ON_BAD_FILE, Clip, fit_clips, read_folder
from cnnlab.data.prepared import Split, write_prepared

SOURCES = ("synthetic", "folder")

@dataclass
class NoiseConfig:
    """`synthetic.noise`: gain, time shift and coloured noise on every synthetic clip."""

    snr_db: Any  # a number, [low, high], or null (no noise)
    gain_db: Any  # a number or [low, high]
    shift_ms: float


@dataclass
class SyntheticConfig:
    """`synthetic`: the eSpeak NG voices, accents, rates and pitches."""

    words: list[str]  # one per class
    languages: list[str]
    variants: Any  # "all" or a list of variant names
    takes: int
    rate: Any  # a number or [low, high]
    pitch: Any
    pitch_range: Any
    trim_db: float | None
    noise: NoiseConfig | None


@dataclass
class SplitConfig:
    by: str  # speaker | take
    test_speakers: Any  # a list of names or how many to draw
    val_speakers: Any
    test_takes: list[str]
    val_takes: list[str]
    val_fraction: float


@dataclass
class AugmentConfig:
    """`augment`: extra perturbed copies of each training clip."""

    copies: int
    speed: Any  # a number or [low, high]
    snr_db: Any  # a number, [low, high], or null (no noise)
    gain_db: Any
    shift_ms: float


@dataclass
class FeaturesConfig:
    kind: str  # mel | linear
    n_fft: int
    hop_length: int
    n_mels: int
    f_min: float
    f_max: float | None
    frames: int
    top_db: float
    normalize: str  # per_band | per_clip | global | none


@dataclass
class AudioConfig:
    """Keys of `data.audio` (values in conf/data/audio.yaml); allowed values are checked by
    the code that reads them."""

    dataset: str
    source: str  # synthetic | folder
    folder: str | None
    label_from: str  # filename | subfolder
    on_bad_file: str  # error | skip
    mix_synthetic: bool
    trim_db: float | None
    classes: list[str]
    sample_rate: int
    seed: int
    synthetic: SyntheticConfig
    split: SplitConfig
    augment: AugmentConfig
    features: FeaturesConfig
    pitch_shift: shift.PitchShiftConfig


@dataclass
class AudioDataset:
    splits: dict[str, Split]
    manifest: dict[str, Any]
    clips: dict[str, list[Clip]]  # the clips behind each split's rows (copies included)
    shifted: dict[str, torch.Tensor] | None = None  # shift.pack of the test clips


def build(cfg: Mapping[str, Any]) -> AudioDataset:
    """Read or synthesise the clips, split them, perturb, and compute spectrograms."""
    source = choice(cfg, "source", SOURCES, "data.audio")
    classes = [str(c) for c in cfg["classes"]]
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ConfigError(f"data.audio.classes={classes}: needs at least two distinct names")
    seed = int(cfg["seed"])
    rate = int(cfg["sample_rate"])
    if rate <= 0:
        raise ConfigError(f"data.audio.sample_rate={rate}: must be positive")
    choice(cfg, "on_bad_file", ON_BAD_FILE, "data.audio")
    features = Spectrograms(cfg["features"], rate)
    norm_mode = choice(cfg["features"], "normalize", NORMALIZE, "data.audio.features")
    steps = shift.check(cfg["pitch_shift"])
    if source == "synthetic":
        clips, provenance = synthetic_clips(cfg, classes, seed, rate, features.samples)
    else:
        clips, provenance = read_folder(cfg, classes)
        fit_clips(clips, rate, cfg["trim_db"], features.samples)  # as predict fits a user's clip
    parts, split_info = split_indices(clips, cfg["split"], seed)
    by_split = {name: [clips[i] for i in idx] for name, idx in parts.items()}
    augment = cfg["augment"]
    copies = int(augment["copies"])
    if copies > 0:
        extra = [Clip(c.wave, rate, c.label, c.speaker, c.take,
                      f"{c.origin} (augmented copy {k + 1})")
                 for k in range(copies) for c in by_split["train"]]
        perturb_clips(extra, rate, features.samples, np.random.default_rng([seed, 3]), augment,
                      "data.audio.augment")
        by_split["train"] = by_split["train"] + extra
    mixed = {}
    if cfg["mix_synthetic"] and source == "folder":
        voices, about = synthetic_clips(cfg, classes, seed, rate, features.samples)
        for clip in voices:  # never mistaken for a real speaker of the same name
            clip.speaker = f"espeak-{clip.speaker}"
        by_split["train"] = by_split["train"] + voices
        mixed = {"mix_synthetic": {"clips": len(voices), "voices": about["variants"],
                                   "library_sha256": about["library_sha256"]}}
    x = {name: features(np.stack([c.wave for c in cs])) for name, cs in by_split.items()}
    test_waves = np.stack([c.wave for c in by_split["test"]])
    x |= shift.shifted_spectrograms(test_waves, steps, cfg["pitch_shift"], features)
    norm_info = normalize(x, norm_mode)  # the shifted clips exactly as the test split
    splits = {name: Split(x[name], torch.tensor([c.label for c in cs], dtype=torch.int64))
              for name, cs in by_split.items()}
    shifted = shift.pack(x, steps, splits["test"].y) if steps else None
    feature_cfg = dict(cfg["features"])
    manifest = {
        "dataset": str(cfg["dataset"]),
        "classes": classes,
        "input_shape": list(splits["train"].x.shape[1:]),
        "axes": ["channel", "frequency (low to high)", "time"],
        "sample_rate": rate,
        "clip_seconds": features.samples / rate,
        "features": {**feature_cfg, "normalization": norm_info},
        "split": split_info,
        "augment": {"train_copies": copies, **({k: v for k, v in augment.items()
                                                 if k != "copies"} if copies else {})},
        "seed": seed,
        "pitch_shift": {**dict(cfg["pitch_shift"]), "semitones": steps,
                        "file": shift.FILE if steps else None},
        **provenance,
        **mixed,
    }
    return AudioDataset(splits, manifest, by_split, shifted)


def clips_csv(clips: dict[str, list[Clip]]) -> str:
    """One row per prepared example: split, row, label index, speaker, take, origin."""
    lines = ["split,row,label,speaker,take,origin"]
    for name, cs in clips.items():
        for i, c in enumerate(cs):
            origin = c.origin.replace('"', "'")
            lines.append(f'{name},{i},{c.label},{c.speaker},{c.take},"{origin}"')
    return "\n".join(lines) + "\n"


def prepare(cfg: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Build the dataset and write it, with its pictures and clip list, into `out_dir`.

    `out_dir` exists and is empty: the stage contract stages it and publishes it atomically.
    """
    return write_dataset(build(cfg), out_dir)


def write_dataset(dataset: AudioDataset, out_dir: str | Path) -> dict[str, Any]:
    """Write a built dataset, its clip list and pictures into the existing folder `out_dir`."""
    out_dir = Path(out_dir)
    manifest = write_prepared(out_dir, dataset.splits, dataset.manifest)
    if dataset.shifted is not None:  # beside the splits, listed and hashed in the manifest
        save_torch(out_dir / shift.FILE, dataset.shifted)
        manifest["files"][shift.FILE] = sha256_file(out_dir / shift.FILE)
        write_json(out_dir / "manifest.json", manifest)
    (out_dir / "clips.csv").write_text(clips_csv(dataset.clips), encoding="utf-8")
    save_examples(dataset, out_dir)
    return manifest
