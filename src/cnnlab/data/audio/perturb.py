"""Seeded perturbation of clips: speed, gain, time shift and coloured background noise."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.signal

from cnnlab.core.errors import ConfigError
from cnnlab.data.audio.checks import value_range
from cnnlab.data.audio.wav import Clip, fix_length, resample


def perturb(wave: np.ndarray, rate: int, rng: np.random.Generator,
            cfg: Mapping[str, Any], where: str) -> np.ndarray:
    """Seeded gain, time shift (zero fill) and coloured background noise at a random SNR.

    A null `snr_db` adds no noise.
    """
    gain_lo, gain_hi = value_range(cfg, "gain_db", where)
    add_noise = cfg["snr_db"] is not None
    snr_lo, snr_hi = value_range(cfg, "snr_db", where) if add_noise else (0.0, 0.0)
    max_shift = int(round(float(cfg["shift_ms"]) * rate / 1000))
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
    lo, hi = value_range(cfg, "speed", where, default=1.0)  # synthetic.noise has no speed
    if lo <= 0:
        raise ConfigError(f"{where}.speed={cfg['speed']!r}: factors must be positive")
    for clip in clips:  # factors in steps of 0.01 keep the resampling kernels few and small
        clip.rate = int(round(rate * round(float(rng.uniform(lo, hi)), 2)))
    resample(clips, rate)
    for clip in clips:
        clip.wave = perturb(fix_length(clip.wave, n_samples), rate, rng, cfg, where)
