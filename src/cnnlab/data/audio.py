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
"""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal
import soundfile as sf
import torch
import torchaudio

from cnnlab.data.prepared import Split, write_prepared
from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.io import atomic_dir, sha256_file

DIGITS = [str(d) for d in range(10)]
SOURCES = ("synthetic", "folder")
LABEL_FROM = ("filename", "subfolder")
SPLIT_BY = ("speaker", "take")
FEATURES = ("mel", "linear")
NORMALIZE = ("per_clip", "per_band", "global", "none")
ON_BAD_FILE = ("error", "skip")


@dataclass
class Clip:
    """One mono recording at `rate` Hz with its label index and where it came from."""

    wave: np.ndarray  # float32 in [-1, 1]
    rate: int
    label: int
    speaker: str
    take: str
    origin: str  # file path, or the eSpeak utterance that made it


def _choice(cfg: Mapping[str, Any], key: str, allowed: Sequence[str], where: str) -> str:
    value = cfg.get(key, allowed[0])
    if value not in allowed:
        raise ConfigError(f"{where}.{key}={value!r}: choose one of {list(allowed)}")
    return value


def _range(cfg: Mapping[str, Any], key: str, where: str, default: float | None = None
           ) -> tuple[float, float]:
    value = cfg.get(key)
    if value is None and default is not None:
        return default, default
    if isinstance(value, (int, float)):
        return float(value), float(value)
    if (isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2
            or not all(isinstance(v, (int, float)) for v in value) or value[0] > value[1]):
        raise ConfigError(f"{where}.{key}={value!r}: expected a number or [low, high]")
    return float(value[0]), float(value[1])


# ------------------------------------------------------------- reading ----
def read_wav(path: str | Path, content: bytes | None = None) -> tuple[np.ndarray, int]:
    """A mono WAV as float32 samples and its rate; any defect is a DataError naming the file.

    `content`: the file's bytes when the caller has read them already (decoded, not re-read).
    """
    path = Path(path)
    try:
        source = path if content is None else io.BytesIO(content)
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise DataError(f"{path}: unreadable or corrupt WAV ({exc})") from exc
    if data.shape[1] != 1:
        raise DataError(f"{path}: has {data.shape[1]} channels, expected mono")
    if data.shape[0] == 0:
        raise DataError(f"{path}: empty clip (no samples)")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: contains NaN or infinite samples")
    if not np.any(data):
        raise DataError(f"{path}: silent clip (every sample is zero)")
    return data[:, 0], int(rate)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from exc


def parse_name(path: Path, root: Path, label_from: str) -> tuple[str, str, str]:
    """(label, speaker, take) of a file: `{label}_{speaker}_{take}.wav` or `<label>/<name>.wav`.

    In a sub-folder layout the speaker is the part of the name before `_nohash_` (Speech
    Commands) or before the last `_`, and the take is the part after the last `_`.
    """
    if label_from == "filename":
        parts = path.stem.split("_")
        if len(parts) < 3 or not all(parts):
            raise DataError(f"{path}: name does not follow {{label}}_{{speaker}}_{{take}}.wav")
        return parts[0], "_".join(parts[1:-1]), parts[-1]
    rel = path.relative_to(root)
    if len(rel.parts) != 2:
        raise DataError(f"{path}: expected <label>/<file>.wav directly under {root}")
    stem = path.stem
    if "_nohash_" in stem:
        speaker, _, take = stem.partition("_nohash_")
    elif "_" in stem:
        speaker, _, take = stem.rpartition("_")
    else:
        speaker, take = stem, "0"
    return rel.parts[0], speaker, take


def wav_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".wav")


def read_folder(cfg: Mapping[str, Any], classes: Sequence[str]) -> tuple[list[Clip], dict]:
    """Every WAV under `cfg['folder']`; returns the clips and the provenance for the manifest."""
    if not cfg.get("folder"):
        raise ConfigError("data.audio.folder must name a folder of WAV files when "
                          "data.audio.source=folder (e.g. data.audio.folder=path/to/recordings)")
    folder = Path(cfg["folder"]).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: data.audio.folder does not exist or is not a folder")
    label_from = _choice(cfg, "label_from", LABEL_FROM, "data.audio")
    on_bad = _choice(cfg, "on_bad_file", ON_BAD_FILE, "data.audio")
    files = wav_files(folder)
    if not files:
        raise DataError(f"{folder}: no .wav files found (data.audio.folder)")
    index = {name: i for i, name in enumerate(classes)}
    clips: list[Clip] = []
    skipped: list[tuple[str, str]] = []
    # One digest of every WAV's relative path and bytes: the manifest records exactly which
    # recordings the dataset was built from (DVC cannot track a folder named by a parameter).
    digest = hashlib.sha256()
    for path in files:
        try:
            content = _read_bytes(path)
            file_sha = hashlib.sha256(content).hexdigest()
            digest.update(f"{path.relative_to(folder).as_posix()}\0{file_sha}\n".encode())
            label, speaker, take = parse_name(path, folder, label_from)
            if label not in index:
                raise DataError(f"{path}: label {label!r} is not one of data.audio.classes "
                                f"{list(classes)}")
            wave, rate = read_wav(path, content)
        except DataError as exc:
            if on_bad == "error":
                raise
            skipped.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        clips.append(Clip(wave, rate, index[label], speaker, take, str(path)))
    if skipped:
        reasons = Counter(reason.split(" (")[0].split(" [")[0] for _, reason in skipped)
        warnings.warn(f"{folder}: skipped {len(skipped)} of {len(files)} WAV files "
                      f"(on_bad_file=skip): {dict(reasons)}; e.g. {skipped[0][0]}: "
                      f"{skipped[0][1]}", stacklevel=2)
    if not clips:
        raise DataError(f"{folder}: none of the {len(files)} WAV files could be used")
    provenance = {
        "source": "folder", "folder": str(folder), "label_from": label_from,
        "files_found": len(files), "files_used": len(clips),
        "folder_sha256": digest.hexdigest(),
        "skipped": {"count": len(skipped), "files": [{"file": f, "reason": r}
                                                     for f, r in skipped]},
    }
    return clips, provenance


# ----------------------------------------------------------- synthetic ----
def synthesize(cfg: Mapping[str, Any], classes: Sequence[str], seed: int) -> tuple[list[Clip], dict]:
    """Each word said `takes` times by every variant, each take with a random accent, rate
    and pitch drawn by `seed`. Returns the clips (at eSpeak's rate) and their provenance."""
    from cnnlab.data import espeak

    where = "data.audio.synthetic"
    words = list(cfg.get("words") or classes)
    if len(words) != len(classes):
        raise ConfigError(f"{where}.words has {len(words)} entries but data.audio.classes has "
                          f"{len(classes)}: give one word per class")
    available = espeak.variant_names()
    variants = available if cfg.get("variants", "all") == "all" else list(cfg["variants"])
    unknown = sorted(set(variants) - set(available))
    if unknown:
        raise ConfigError(f"{where}.variants: eSpeak NG has no variant {unknown}; "
                          f"choose from {available}")
    languages = list(cfg.get("languages") or [])
    unknown = sorted({str(lang).lower() for lang in languages} - set(espeak.language_names()))
    if unknown:
        raise ConfigError(f"{where}.languages: eSpeak NG has no language {unknown}")
    takes = int(cfg.get("takes", 1))
    if not languages or takes <= 0 or not variants:
        raise ConfigError(f"{where}: needs languages, variants and takes >= 1")
    rate_lo, rate_hi = _range(cfg, "rate", where)
    pitch_lo, pitch_hi = _range(cfg, "pitch", where)
    range_lo, range_hi = _range(cfg, "pitch_range", where)
    trim_db = cfg.get("trim_db")
    rng = np.random.default_rng(seed)
    jobs = []
    for variant in variants:
        for label, word in enumerate(words):
            for take in range(takes):
                utt = espeak.Utterance(
                    str(word), str(languages[rng.integers(len(languages))]), variant,
                    int(rng.integers(rate_lo, rate_hi + 1)),
                    int(rng.integers(pitch_lo, pitch_hi + 1)),
                    int(rng.integers(range_lo, range_hi + 1)), int(rng.integers(1 << 31)))
                jobs.append((utt, label, str(take)))
    sample_rate, waves = espeak.say_all([utt for utt, _, _ in jobs])
    clips = []
    for (utt, label, take), samples in zip(jobs, waves, strict=True):
        wave = samples.astype(np.float32) / 32768.0
        if trim_db is not None:
            wave = trim_silence(wave, float(trim_db))
        if not np.any(wave):
            raise DataError(f"eSpeak NG said nothing for {utt.text!r} with {utt.voice}")
        clips.append(Clip(wave, sample_rate, label, utt.variant, take,
                          f"espeak:{utt.voice} rate={utt.rate} pitch={utt.pitch} "
                          f"range={utt.pitch_range}"))
    lib = espeak.package_dir() / "libespeak-ng.so"
    provenance = {"source": "synthetic", "synthesizer": "eSpeak NG (espeakng-loader)",
                  "library_sha256": sha256_file(lib), "words": words, "languages": languages,
                  "variants": len(variants), "takes": takes}
    return clips, provenance


def synthetic_clips(cfg: Mapping[str, Any], classes: Sequence[str], seed: int, rate: int,
                    n_samples: int) -> tuple[list[Clip], dict]:
    """The synthetic source: eSpeak clips at `rate`, `n_samples` long, with their noise."""
    synthetic = cfg.get("synthetic") or {}
    clips, provenance = synthesize(synthetic, classes, seed)
    resample(clips, rate)
    for clip in clips:
        clip.wave = fix_length(clip.wave, n_samples)
    if noise := synthetic.get("noise"):
        perturb_clips(clips, rate, n_samples, np.random.default_rng([seed, 1]), noise,
                      "data.audio.synthetic.noise")
    return clips, provenance


def trim_silence(wave: np.ndarray, below_peak_db: float) -> np.ndarray:
    """Cut leading and trailing samples quieter than `below_peak_db` under the peak."""
    peak = float(np.abs(wave).max()) if len(wave) else 0.0
    if peak == 0.0:
        return wave
    loud = np.flatnonzero(np.abs(wave) >= peak * 10 ** (-below_peak_db / 20))
    return wave[loud[0]: loud[-1] + 1]


# ---------------------------------------------------------- waveforms ----
def resample(clips: list[Clip], rate: int, chunk: int = 256) -> None:
    """Bring every clip to `rate` Hz in place (torchaudio's windowed-sinc resampler).

    Clips of one source rate go through one cached kernel in zero-padded batches; the
    resampler pads with zeros anyway, so each clip comes out exactly as it would alone.
    """
    for source_rate in sorted({c.rate for c in clips} - {rate}):
        resampler = torchaudio.transforms.Resample(source_rate, rate)
        group = [c for c in clips if c.rate == source_rate]
        for start in range(0, len(group), chunk):
            batch = group[start:start + chunk]
            longest = max(len(c.wave) for c in batch)
            waves = torch.from_numpy(np.stack([np.pad(c.wave, (0, longest - len(c.wave)))
                                               for c in batch]))
            out = resampler(waves).numpy()
            for clip, row in zip(batch, out, strict=True):
                clip.wave = row[: math.ceil(len(clip.wave) * rate / source_rate)].copy()
                clip.rate = rate


def fix_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Pad with zeros or crop to `n` samples, keeping the clip centred."""
    if len(wave) >= n:
        start = (len(wave) - n) // 2
        return wave[start: start + n]
    left = (n - len(wave)) // 2
    return np.pad(wave, (left, n - len(wave) - left))


def perturb(wave: np.ndarray, rate: int, rng: np.random.Generator,
            cfg: Mapping[str, Any], where: str) -> np.ndarray:
    """Seeded gain, time shift (zero fill) and coloured background noise at a random SNR.

    A missing `gain_db` or `shift_ms` is 0; a missing (null) `snr_db` adds no noise.
    """
    gain_lo, gain_hi = _range(cfg, "gain_db", where, default=0.0)
    add_noise = cfg.get("snr_db") is not None
    snr_lo, snr_hi = _range(cfg, "snr_db", where) if add_noise else (0.0, 0.0)
    max_shift = int(round(float(cfg.get("shift_ms", 0)) * rate / 1000))
    out = wave * np.float32(10 ** (rng.uniform(gain_lo, gain_hi) / 20))
    shift = int(rng.integers(-max_shift, max_shift + 1)) if max_shift else 0
    if shift:
        out = np.roll(out, shift)
        if shift > 0:
            out[:shift] = 0
        else:
            out[shift:] = 0
    power = float(np.mean(out ** 2))
    if add_noise and power > 0:
        white = rng.standard_normal(len(out))
        tilt = rng.uniform(0.0, 0.95)  # 0: white; near 1: low-frequency (brown-ish) noise
        noise = scipy.signal.lfilter([1.0], [1.0, -tilt], white)  # one-pole low-pass
        snr = rng.uniform(snr_lo, snr_hi)
        noise *= math.sqrt(power / (np.mean(noise ** 2) * 10 ** (snr / 10)))
        out = out + noise.astype(np.float32)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def perturb_clips(clips: list[Clip], rate: int, n_samples: int, rng: np.random.Generator,
                  cfg: Mapping[str, Any], where: str) -> None:
    """In place: a random speed (every frequency and the tempo scaled together, as a shorter
    or longer vocal tract and a faster or slower talker), then `perturb` each clip."""
    lo, hi = _range(cfg, "speed", where, default=1.0)
    if lo <= 0:
        raise ConfigError(f"{where}.speed={cfg.get('speed')!r}: factors must be positive")
    for clip in clips:  # factors in steps of 0.01 keep the resampling kernels few and small
        clip.rate = int(round(rate * round(float(rng.uniform(lo, hi)), 2)))
    resample(clips, rate)
    for clip in clips:
        clip.wave = perturb(fix_length(clip.wave, n_samples), rate, rng, cfg, where)


# ------------------------------------------------------------- splits ----
def _pick(wanted: Any, pool: list[str], rng: np.random.Generator, key: str) -> list[str]:
    """A list of names (each must be in `pool`) or a count drawn from `pool` by the seed."""
    if wanted is None:
        return []
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        if not 0 <= wanted < len(pool):
            raise ConfigError(f"data.audio.split.{key}={wanted}: must be between 0 and "
                              f"{len(pool) - 1} (there are {len(pool)} speakers left)")
        return sorted(pool[i] for i in rng.permutation(len(pool))[:wanted])
    names = [str(n) for n in wanted]
    missing = sorted(set(names) - set(pool))
    if missing:
        raise ConfigError(f"data.audio.split.{key}: {missing} not among the speakers "
                          f"available here {pool}")
    return sorted(set(names))


def split_indices(clips: Sequence[Clip], cfg: Mapping[str, Any], seed: int
                  ) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """Clip indices of train/val/test, by held-out speakers or by take numbers.

    By speaker, no test (or val) speaker has a clip in training. Without val speakers or
    takes, `val_fraction` of the remaining clips is drawn by the seed.
    """
    by = _choice(cfg, "by", SPLIT_BY, "data.audio.split")
    rng = np.random.default_rng([seed, 2])
    if by == "speaker":
        speakers = sorted({c.speaker for c in clips})
        test = _pick(cfg.get("test_speakers"), speakers, rng, "test_speakers")
        rest = [s for s in speakers if s not in test]
        val = _pick(cfg.get("val_speakers"), rest, rng, "val_speakers")
        role = {s: "test" for s in test} | {s: "val" for s in val}
        assign = [role.get(c.speaker, "train") for c in clips]
        info: dict[str, Any] = {"by": "speaker"}
    else:
        test_takes = {str(t) for t in cfg.get("test_takes") or []}
        val_takes = {str(t) for t in cfg.get("val_takes") or []} - test_takes
        assign = ["test" if c.take in test_takes else "val" if c.take in val_takes else "train"
                  for c in clips]
        info = {"by": "take", "test_takes": sorted(test_takes, key=_natural),
                "val_takes": sorted(val_takes, key=_natural)}
    if "val" not in assign:
        fraction = float(cfg.get("val_fraction", 0.1))
        if not 0.0 < fraction < 1.0:
            raise ConfigError(f"data.audio.split.val_fraction={fraction}: must be in (0, 1) "
                              "when no val speakers or takes are given")
        train = [i for i, a in enumerate(assign) if a == "train"]
        for i in rng.permutation(train)[: int(round(fraction * len(train)))]:
            assign[int(i)] = "val"
        info["val_fraction"] = fraction
    parts = {name: [i for i, a in enumerate(assign) if a == name] for name in ("train", "val",
                                                                             "test")}
    for name, idx in parts.items():
        if not idx:
            raise ConfigError(f"data.audio.split: the {name} split is empty ({info}); "
                              "check test/val speakers or takes")
    info["speakers"] = {name: sorted({clips[i].speaker for i in idx}, key=_natural)
                        for name, idx in parts.items()}
    return parts, info


def _natural(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 30, name)


# ----------------------------------------------------------- features ----
class Spectrograms:
    """Fixed-length waveforms -> dB (mel) spectrograms, N x 1 x F x T, low frequencies first."""

    def __init__(self, cfg: Mapping[str, Any], rate: int) -> None:
        where = "data.audio.features"
        self.kind = _choice(cfg, "kind", FEATURES, where)
        self.frames = int(cfg.get("frames", 64))
        n_fft, hop = int(cfg.get("n_fft", 256)), int(cfg.get("hop_length", 128))
        if self.frames <= 1 or hop <= 0 or n_fft <= 0:
            raise ConfigError(f"{where}: frames ({self.frames}) must be > 1, n_fft ({n_fft}) "
                              f"and hop_length ({hop}) positive")
        self.samples = hop * (self.frames - 1)  # centred STFT: samples // hop + 1 frames
        if self.kind == "mel":
            self.transform = torchaudio.transforms.MelSpectrogram(
                rate, n_fft=n_fft, hop_length=hop, n_mels=int(cfg.get("n_mels", 40)),
                f_min=float(cfg.get("f_min", 0.0)), f_max=cfg.get("f_max"))
        else:
            self.transform = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop)
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=cfg.get("top_db", 80))

    def __call__(self, waves: np.ndarray, chunk: int = 512) -> torch.Tensor:
        out = []
        for start in range(0, len(waves), chunk):
            power = self.transform(torch.from_numpy(waves[start:start + chunk]))
            out.append(self.to_db(power.unsqueeze(1)))  # N x 1 x F x T: top_db per clip
        return torch.cat(out).float()


def normalize(splits: dict[str, torch.Tensor], mode: str) -> dict[str, Any]:
    """In place: per clip (zero mean, unit variance), per band with training statistics, or not."""
    if mode == "per_clip":
        for x in splits.values():
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True)
            x.sub_(mean).div_(std + 1e-5)
        return {"mode": mode}
    if mode == "per_band":
        for x in splits.values():
            x.sub_(x.mean(dim=3, keepdim=True))
            x.div_(x.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return {"mode": mode}
    if mode == "global":
        train = splits["train"]
        mean = train.mean(dim=(0, 1, 3), keepdim=True)
        std = train.std(dim=(0, 1, 3), keepdim=True)
        for x in splits.values():
            x.sub_(mean).div_(std + 1e-5)
        return {"mode": mode, "band_mean": mean.flatten().tolist(),
                "band_std": std.flatten().tolist()}
    return {"mode": "none"}


# ------------------------------------------------------------ prepare ----
@dataclass
class AudioDataset:
    splits: dict[str, Split]
    manifest: dict[str, Any]
    clips: dict[str, list[Clip]]  # the clips behind each split's rows (copies included)


def build(cfg: Mapping[str, Any]) -> AudioDataset:
    """Read or synthesise the clips, split them, perturb, and compute spectrograms."""
    source = _choice(cfg, "source", SOURCES, "data.audio")
    classes = [str(c) for c in cfg.get("classes") or DIGITS]
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ConfigError(f"data.audio.classes={classes}: needs at least two distinct names")
    seed = int(cfg.get("seed", 0))
    rate = int(cfg.get("sample_rate", 8000))
    if rate <= 0:
        raise ConfigError(f"data.audio.sample_rate={rate}: must be positive")
    _choice(cfg, "on_bad_file", ON_BAD_FILE, "data.audio")
    features = Spectrograms(cfg.get("features") or {}, rate)
    norm_mode = _choice(cfg.get("features") or {}, "normalize", NORMALIZE, "data.audio.features")
    if source == "synthetic":
        clips, provenance = synthetic_clips(cfg, classes, seed, rate, features.samples)
    else:
        clips, provenance = read_folder(cfg, classes)
        resample(clips, rate)
        trim_db = cfg.get("trim_db")
        for clip in clips:
            if trim_db is not None:
                clip.wave = trim_silence(clip.wave, float(trim_db))
            clip.wave = fix_length(clip.wave, features.samples)
    parts, split_info = split_indices(clips, cfg.get("split") or {}, seed)
    by_split = {name: [clips[i] for i in idx] for name, idx in parts.items()}
    augment = cfg.get("augment") or {}
    copies = int(augment.get("copies", 0))
    if copies > 0:
        extra = [Clip(c.wave, rate, c.label, c.speaker, c.take,
                      f"{c.origin} (augmented copy {k + 1})")
                 for k in range(copies) for c in by_split["train"]]
        perturb_clips(extra, rate, features.samples, np.random.default_rng([seed, 3]), augment,
                      "data.audio.augment")
        by_split["train"] = by_split["train"] + extra
    mixed = {}
    if cfg.get("mix_synthetic") and source == "folder":
        voices, about = synthetic_clips(cfg, classes, seed, rate, features.samples)
        for clip in voices:  # never mistaken for a real speaker of the same name
            clip.speaker = f"espeak-{clip.speaker}"
        by_split["train"] = by_split["train"] + voices
        mixed = {"mix_synthetic": {"clips": len(voices), "voices": about["variants"],
                                   "library_sha256": about["library_sha256"]}}
    x = {name: features(np.stack([c.wave for c in cs])) for name, cs in by_split.items()}
    norm_info = normalize(x, norm_mode)
    splits = {name: Split(x[name], torch.tensor([c.label for c in cs], dtype=torch.int64))
              for name, cs in by_split.items()}
    feature_cfg = dict(cfg.get("features") or {})
    manifest = {
        "dataset": str(cfg.get("dataset", "audio")),
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
        **provenance,
        **mixed,
    }
    return AudioDataset(splits, manifest, by_split)


def clips_csv(clips: dict[str, list[Clip]]) -> str:
    """One row per prepared example: split, row, label index, speaker, take, origin."""
    lines = ["split,row,label,speaker,take,origin"]
    for name, cs in clips.items():
        for i, c in enumerate(cs):
            origin = c.origin.replace('"', "'")
            lines.append(f'{name},{i},{c.label},{c.speaker},{c.take},"{origin}"')
    return "\n".join(lines) + "\n"


def save_examples(dataset: AudioDataset, out_dir: Path) -> list[Path]:
    """Two pictures: one test clip per class, and one word said by several training speakers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = dataset.manifest["classes"]
    paths = []
    test, test_clips = dataset.splits["test"], dataset.clips["test"]
    firsts = [next((i for i, c in enumerate(test_clips) if c.label == k), None)
              for k in range(len(classes))]
    shown = [(classes[k], i) for k, i in enumerate(firsts) if i is not None][:10]
    if shown:
        fig, axes = plt.subplots(2, (len(shown) + 1) // 2, figsize=(2.2 * len(shown) / 2 + 1, 5),
                                 squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, (name, i) in zip(axes.flat, shown, strict=False):
            ax.imshow(test.x[i, 0].numpy(), origin="lower", aspect="auto", cmap="magma")
            ax.set_title(f"'{name}' ({test_clips[i].speaker})", fontsize=8)
        fig.suptitle("one test clip per class: frequency up, time right")
        fig.tight_layout()
        paths.append(out_dir / "examples_classes.png")
        fig.savefig(paths[-1], dpi=80)
        plt.close(fig)
    train, train_clips = dataset.splits["train"], dataset.clips["train"]
    label = train_clips[0].label
    seen: dict[str, int] = {}
    for i, c in enumerate(train_clips):
        if c.label == label and c.speaker not in seen and "augmented" not in c.origin:
            seen[c.speaker] = i
    chosen = list(seen.items())[:: max(1, len(seen) // 6)][:6]
    fig, axes = plt.subplots(1, len(chosen), figsize=(2.2 * len(chosen), 2.8), squeeze=False)
    for ax, (speaker, i) in zip(axes.flat, chosen, strict=True):
        ax.imshow(train.x[i, 0].numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(speaker, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"'{classes[label]}' said by {len(chosen)} training speakers")
    fig.tight_layout()
    paths.append(out_dir / "examples_speakers.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    return paths


def prepare(cfg: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Build the dataset and write it, with its pictures and clip list, atomically to `out_dir`."""
    dataset = build(cfg)
    with atomic_dir(out_dir) as tmp:
        manifest = write_prepared(tmp, dataset.splits, dataset.manifest)
        (tmp / "clips.csv").write_text(clips_csv(dataset.clips), encoding="utf-8")
        save_examples(dataset, tmp)
    return manifest
