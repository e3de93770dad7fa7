"""Offline speech synthesis with the eSpeak NG library carried by the `espeakng-loader` wheel.

The library is driven through ctypes in synchronous mode: a callback collects the 16-bit
samples of each utterance. eSpeak keeps global state, so one `Synthesizer` per process is
enough; it is created lazily and reused.
"""

from __future__ import annotations

import ctypes
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import ConfigError, DataError

PACKAGE = "espeakng_loader"
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_RATE, ESPEAK_PITCH, ESPEAK_RANGE = 1, 3, 4
POS_CHARACTER = 1
EE_OK = 0

# int callback(short *wav, int numsamples, espeak_EVENT *events)
SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                 ctypes.c_void_p)


def package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise DataError("package 'espeakng-loader' is not installed: run `make install` "
                        "(it carries libespeak-ng and its voice data)")
    return Path(spec.origin).parent


def variant_names() -> list[str]:
    """Every voice variant (`+f3`, `+klatt`, ...) shipped with the library, sorted."""
    folder = package_dir() / "espeak-ng-data" / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file() and " " not in p.name)


@dataclass(frozen=True)
class Utterance:
    """One word said by one voice: `language+variant`, speaking rate (words/min), pitch 0-99."""

    text: str
    language: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int

    @property
    def voice(self) -> str:
        return f"{self.language}+{self.variant}"


class Synthesizer:
    """A loaded eSpeak NG; `say(utterance)` returns int16 samples at `sample_rate`."""

    _instance: Synthesizer | None = None

    def __init__(self) -> None:
        root = package_dir()
        try:
            self.lib = ctypes.CDLL(str(root / "libespeak-ng.so"))
        except OSError as exc:
            raise DataError(f"{root / 'libespeak-ng.so'}: cannot load eSpeak NG ({exc})") from exc
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                               ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint,
                                          ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                          ctypes.c_void_p, ctypes.c_void_p]
        data_path = str(root / "espeak-ng-data").encode()
        self.sample_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
        if self.sample_rate <= 0:
            raise DataError(f"{root / 'espeak-ng-data'}: eSpeak NG failed to initialise")
        self._chunks: list[np.ndarray] = []
        self._callback = SynthCallback(self._collect)  # keep a reference: C holds a pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def shared(cls) -> Synthesizer:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _collect(self, wav, numsamples: int, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        return 0  # continue synthesis

    def say(self, utt: Utterance) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(utt.voice.encode()) != EE_OK:
            raise ConfigError(f"data.audio.synthetic: eSpeak NG has no voice {utt.voice!r}")
        for param, value in ((ESPEAK_RATE, utt.rate), (ESPEAK_PITCH, utt.pitch),
                             (ESPEAK_RANGE, utt.pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        text = utt.text.encode() + b"\0"
        self._chunks = []
        status = self.lib.espeak_Synth(text, len(text), 0, POS_CHARACTER, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        if status != EE_OK:
            raise DataError(f"eSpeak NG failed to say {utt.text!r} with voice {utt.voice}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
