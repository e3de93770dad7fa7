"""The test clips shifted in pitch: the lecture's reason for filters that move along frequency.

A higher or lower voice saying the same word is, to a first approximation, the same
spectrogram moved up or down the frequency axis. `prepare_audio` shifts the test waveforms
once by every step of `data.audio.pitch_shift.semitones` (torchaudio's phase-vocoder
`pitch_shift`: the duration is kept, every frequency scaled by 2^(n/12)), turns them into
spectrograms exactly as the test split (same features and normalisation) and writes them to
`test_pitch_shift.pt`; the results stage evaluates every trained model on them.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError, DataError

FILE = "test_pitch_shift.pt"


@dataclass
class PitchShiftConfig:
    """`data.audio.pitch_shift` (values in conf/data/audio.yaml)."""

    semitones: list[int]  # the shift grid; [] writes no shifted test set
    n_fft: int  # the phase vocoder's window
    ratio_steps: int  # resampling ratio resolution (see `shift_waves`)


def check(cfg: Mapping[str, Any]) -> list[int]:
    """The shift grid, each step a whole number of semitones within an octave."""
    steps = [int(s) for s in cfg["semitones"]]
    if any(abs(s) > 12 for s in steps) or len(set(steps)) != len(steps):
        raise ConfigError(f"data.audio.pitch_shift.semitones={steps}: distinct whole semitones "
                          "between -12 and 12")
    if int(cfg["n_fft"]) < 16 or int(cfg["ratio_steps"]) < 100:
        raise ConfigError(f"data.audio.pitch_shift: n_fft ({cfg['n_fft']}) must be >= 16 and "
                          f"ratio_steps ({cfg['ratio_steps']}) >= 100")
    return sorted(steps)


def shift_waves(waves: np.ndarray, semitones: int, cfg: Mapping[str, Any]) -> np.ndarray:
    """`waves` (N x samples) shifted by `semitones`, same length.

    torchaudio's `pitch_shift` stretches in time, then resamples from int(sr / rate) to sr
    samples: `sample_rate` enters only as that ratio. Passed the clips' own rate (8000), the
    polyphase resampler has 8000 phases and dominates: 800 clips took 31.9 s a shift on one
    (shared) core, against 8.9 s with `ratio_steps` (1000) phases, whose ratio differs from
    2^(n/12) by under 1/ratio_steps (0.02 semitone).
    """
    if semitones == 0:
        return waves
    import torchaudio  # here, not at the top: the results stage only reads the shifted clips

    shifted = torchaudio.functional.pitch_shift(torch.from_numpy(waves), int(cfg["ratio_steps"]),
                                                int(semitones), n_fft=int(cfg["n_fft"]))
    return shifted.numpy().astype(np.float32)


def shifted_spectrograms(waves: np.ndarray, steps: Sequence[int], cfg: Mapping[str, Any],
                         features: Any) -> dict[str, torch.Tensor]:
    """One batch of spectrograms per shift, keyed `shift<n>`, before normalisation."""
    return {f"shift{s}": features(shift_waves(waves, s, cfg)) for s in steps}


def pack(x: dict[str, torch.Tensor], steps: Sequence[int], labels: torch.Tensor
         ) -> dict[str, torch.Tensor]:
    """What `test_pitch_shift.pt` holds: the grid, S x N x 1 x F x T inputs, the labels."""
    return {"semitones": torch.tensor(list(steps)),
            "x": torch.stack([x[f"shift{s}"] for s in steps]).contiguous(),
            "y": labels.long()}


def load_shifted(data_dir: Path, manifest: Mapping[str, Any]) -> dict[str, torch.Tensor] | None:
    """The shifted test set of a prepared dataset, checked against its manifest; None when the
    dataset was prepared without one."""
    digest = manifest.get("files", {}).get(FILE)
    if digest is None:
        return None
    path = data_dir / FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the shifted test set ({exc}; re-run "
                        "prepare_audio)") from exc
    if hashlib.sha256(data).hexdigest() != digest:
        raise DataError(f"{path}: sha256 does not match manifest.json (re-run prepare_audio)")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
