"""Fixed-length waveforms -> dB (mel) spectrograms, and their normalisation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torchaudio

from cnnlab.core.errors import ConfigError
from cnnlab.data.audio.checks import choice

FEATURES = ("mel", "linear")
NORMALIZE = ("per_clip", "per_band", "global", "none")


class Spectrograms:
    """Fixed-length waveforms -> dB (mel) spectrograms, N x 1 x F x T, low frequencies first."""

    def __init__(self, cfg: Mapping[str, Any], rate: int) -> None:
        where = "data.audio.features"
        self.kind = choice(cfg, "kind", FEATURES, where)
        self.frames = int(cfg["frames"])
        n_fft, hop = int(cfg["n_fft"]), int(cfg["hop_length"])
        if self.frames <= 1 or hop <= 0 or n_fft <= 0:
            raise ConfigError(f"{where}: frames ({self.frames}) must be > 1, n_fft ({n_fft}) "
                              f"and hop_length ({hop}) positive")
        self.samples = hop * (self.frames - 1)  # centred STFT: samples // hop + 1 frames
        if self.kind == "mel":
            self.transform = torchaudio.transforms.MelSpectrogram(
                rate, n_fft=n_fft, hop_length=hop, n_mels=int(cfg["n_mels"]),
                f_min=float(cfg["f_min"]), f_max=cfg["f_max"])
        else:
            self.transform = torchaudio.transforms.Spectrogram(n_fft=n_fft, hop_length=hop)
        self.to_db = torchaudio.transforms.AmplitudeToDB("power", top_db=cfg["top_db"])

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


def normalize_like(x: torch.Tensor, info: Mapping[str, Any]) -> torch.Tensor:
    """New spectrograms (in place) normalised as a prepared dataset's were; `info` is what
    `normalize` returned for it (the manifest's `features.normalization`)."""
    mode = info.get("mode", "none")
    if mode == "global":  # the training statistics, as recorded
        mean = torch.tensor(info["band_mean"], dtype=x.dtype).view(1, 1, -1, 1)
        std = torch.tensor(info["band_std"], dtype=x.dtype).view(1, 1, -1, 1)
        return x.sub_(mean).div_(std + 1e-5)
    normalize({"new": x}, mode)  # per clip or per band: each clip's own statistics
    return x
