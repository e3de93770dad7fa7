"""Recordings: the Clip, reading and naming WAV files, and fixing rate, silence and length."""

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
import soundfile as sf
import torch
import torchaudio

from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.progress import progress
from cnnlab.data.audio.checks import choice

LABEL_FROM = ("filename", "subfolder")
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
    if not cfg["folder"]:
        raise ConfigError("data.audio.folder must name a folder of WAV files when "
                          "data.audio.source=folder (e.g. data.audio.folder=path/to/recordings)")
    folder = Path(cfg["folder"]).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: data.audio.folder does not exist or is not a folder")
    label_from = choice(cfg, "label_from", LABEL_FROM, "data.audio")
    on_bad = choice(cfg, "on_bad_file", ON_BAD_FILE, "data.audio")
    files = wav_files(folder)
    if not files:
        raise DataError(f"{folder}: no .wav files found (data.audio.folder)")
    index = {name: i for i, name in enumerate(classes)}
    clips: list[Clip] = []
    skipped: list[tuple[str, str]] = []
    # One digest of every WAV's relative path and bytes: the manifest records exactly which
    # recordings the dataset was built from (DVC cannot track a folder named by a parameter).
    digest = hashlib.sha256()
    for path in progress(files, f"reading {folder}"):
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
        "trim_db": cfg["trim_db"],  # what `fit_clips` cut: new recordings are cut the same way
        "files_found": len(files), "files_used": len(clips),
        "folder_sha256": digest.hexdigest(),
        "skipped": {"count": len(skipped), "files": [{"file": f, "reason": r}
                                                     for f, r in skipped]},
    }
    return clips, provenance


def trim_silence(wave: np.ndarray, below_peak_db: float) -> np.ndarray:
    """Cut leading and trailing samples quieter than `below_peak_db` under the peak."""
    peak = float(np.abs(wave).max()) if len(wave) else 0.0
    if peak == 0.0:
        return wave
    loud = np.flatnonzero(np.abs(wave) >= peak * 10 ** (-below_peak_db / 20))
    return wave[loud[0]: loud[-1] + 1]


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


def fit_clips(clips: list[Clip], rate: int, trim_db: float | None, samples: int) -> None:
    """Recordings as the spectrograms want them, in place: resampled to `rate`, silence
    under `trim_db` cut (None: kept), then centred in `samples` samples. Used for a folder
    source when preparing and for a user's recordings when predicting."""
    resample(clips, rate)
    for clip in clips:
        if trim_db is not None:
            clip.wave = trim_silence(clip.wave, float(trim_db))
        clip.wave = fix_length(clip.wave, samples)


def fix_length(wave: np.ndarray, n: int) -> np.ndarray:
    """Pad with zeros or crop to `n` samples, keeping the clip centred."""
    if len(wave) >= n:
        start = (len(wave) - n) // 2
        return wave[start: start + n]
    left = (n - len(wave)) // 2
    return np.pad(wave, (left, n - len(wave) - left))
