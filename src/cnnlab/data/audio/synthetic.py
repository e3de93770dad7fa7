"""The synthetic source: the class words said by eSpeak NG voices, then noise."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.io import sha256_file
from cnnlab.data.audio.checks import value_range
from cnnlab.data.audio.perturb import perturb_clips
from cnnlab.data.audio.wav import Clip, fix_length, resample, trim_silence


def synthesize(cfg: Mapping[str, Any], classes: Sequence[str], seed: int) -> tuple[list[Clip], dict]:
    """Each word said `takes` times by every variant, each take with a random accent, rate
    and pitch drawn by `seed`. Returns the clips (at eSpeak's rate) and their provenance."""
    from cnnlab.data.audio import espeak

    where = "data.audio.synthetic"
    words = list(cfg["words"])
    if len(words) != len(classes):
        raise ConfigError(f"{where}.words has {len(words)} entries but data.audio.classes has "
                          f"{len(classes)}: give one word per class")
    available = espeak.variant_names()
    variants = available if cfg["variants"] == "all" else list(cfg["variants"])
    unknown = sorted(set(variants) - set(available))
    if unknown:
        raise ConfigError(f"{where}.variants: eSpeak NG has no variant {unknown}; "
                          f"choose from {available}")
    languages = list(cfg["languages"])
    unknown = sorted({str(lang).lower() for lang in languages} - set(espeak.language_names()))
    if unknown:
        raise ConfigError(f"{where}.languages: eSpeak NG has no language {unknown}")
    takes = int(cfg["takes"])
    if not languages or takes <= 0 or not variants:
        raise ConfigError(f"{where}: needs languages, variants and takes >= 1")
    rate_lo, rate_hi = value_range(cfg, "rate", where)
    pitch_lo, pitch_hi = value_range(cfg, "pitch", where)
    range_lo, range_hi = value_range(cfg, "pitch_range", where)
    trim_db = cfg["trim_db"]
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
    synthetic = cfg["synthetic"]
    clips, provenance = synthesize(synthetic, classes, seed)
    resample(clips, rate)
    for clip in clips:
        clip.wave = fix_length(clip.wave, n_samples)
    if noise := synthetic["noise"]:
        perturb_clips(clips, rate, n_samples, np.random.default_rng([seed, 1]), noise,
                      "data.audio.synthetic.noise")
    return clips, provenance
