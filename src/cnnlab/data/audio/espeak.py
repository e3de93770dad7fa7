"""Offline speech synthesis with the eSpeak NG library carried by the `espeakng-loader` wheel.

The library is driven through ctypes in synchronous mode: a callback collects the 16-bit
samples of each utterance. eSpeak keeps hidden state from one utterance to the next (the
phase of its pitch flutter, filter memories, a random generator seeded by the clock), so
`say_all` runs a whole list in a fresh process (`python -m cnnlab.data.audio.espeak`) and reseeds
the generators per utterance: the clips then depend only on the list, whatever ran before
in the caller's process.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.progress import progress

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


def language_names() -> list[str]:
    """Every language (accent) eSpeak NG can speak, lower-case as voices are named."""
    folder = package_dir() / "espeak-ng-data" / "lang"
    return sorted(p.name.lower() for p in folder.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Utterance:
    """One word said by one voice: `language+variant`, speaking rate (words/min), pitch 0-99."""

    text: str
    language: str
    variant: str
    rate: int
    pitch: int
    pitch_range: int
    seed: int = 0  # eSpeak's noise sources (breath, whisper) draw random numbers

    @property
    def voice(self) -> str:
        return f"{self.language}+{self.variant}"


class Synthesizer:
    """A loaded eSpeak NG; `say(utterance)` returns int16 samples at `sample_rate`.

    The library is process-global: create one per process (`say_all` does, in a child).
    """

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
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.libc = ctypes.CDLL(None)  # some voices still call the C library's rand()
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
        self.lib.espeak_ng_SetRandSeed(utt.seed)
        self.libc.srand(ctypes.c_uint(utt.seed))
        text = utt.text.encode() + b"\0"
        self._chunks = []
        status = self.lib.espeak_Synth(text, len(text), 0, POS_CHARACTER, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        if status != EE_OK:
            raise DataError(f"eSpeak NG failed to say {utt.text!r} with voice {utt.voice}")
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)


def say_all(utterances: list[Utterance]) -> tuple[int, list[np.ndarray]]:
    """(sample rate, int16 samples per utterance), synthesised in a fresh child process."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-espeak-") as tmp:
        request, result = Path(tmp) / "utterances.json", Path(tmp) / "waves.npz"
        request.write_text(json.dumps([asdict(u) for u in utterances]), encoding="utf-8")
        # stdout passes through: the child's progress bar, when progress is on
        proc = subprocess.run([sys.executable, "-m", "cnnlab.data.audio.espeak", str(request),
                               str(result)], stderr=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
            raise DataError(f"eSpeak NG synthesis failed: {lines[-1]}")
        with np.load(result) as blob:
            rate, samples, ends = int(blob["rate"]), blob["samples"], blob["ends"]
    return rate, np.split(samples, ends[:-1])


def _main(request: str, result: str) -> None:
    """Child process of `say_all`: say every utterance of `request`, save them to `result`."""
    utterances = [Utterance(**u) for u in json.loads(Path(request).read_text(encoding="utf-8"))]
    synth = Synthesizer()
    waves = [synth.say(u) for u in progress(utterances, "eSpeak synthesis", stream=sys.stdout)]
    ends = np.cumsum([len(w) for w in waves])
    samples = np.concatenate(waves) if waves else np.zeros(0, np.int16)
    np.savez(result, rate=synth.sample_rate, samples=samples, ends=ends)


if __name__ == "__main__":
    _main(*sys.argv[1:3])
