"""A user's files as model inputs, preprocessed as the model's prepared dataset was.

The kind of a file is judged by its content (PNG/JPEG, WAV/FLAC, UTF-8 text), not its name;
a file of another kind than the model takes, or one that cannot be decoded, is a DataError
naming the file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import DataError
from cnnlab.data import mnist, text
from cnnlab.data.audio.spectrogram import Spectrograms, normalize_like
from cnnlab.data.audio.wav import Clip, fit_clips, read_wav

KINDS = {"image": "PNG or JPEG images", "audio": "WAV or FLAC recordings",
         "text": "UTF-8 text files, one review a line"}
A_KIND = {"image": "an image", "audio": "a recording", "text": "a text file"}


@dataclass
class Example:
    """One input: where it came from, its tensor as the prepared data stores it, and what
    was done to it on the way (for the user)."""

    name: str
    x: torch.Tensor
    notes: dict[str, Any] = field(default_factory=dict)


def kind_of(content: bytes) -> str | None:
    """image, audio or text by the file's first bytes; None for anything else."""
    if content.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")):
        return "image"
    if (content[:4] == b"RIFF" and content[8:12] == b"WAVE") or content[:4] == b"fLaC":
        return "audio"
    return "text" if b"\0" not in content[:4096] else None


def read_file(path: Path) -> bytes:
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file is missing") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None


class Domain:
    """What a model of one domain takes, and how a file becomes its examples."""

    kind = ""

    def examples(self, path: Path, content: bytes) -> list[Example]:
        raise NotImplementedError

    def read(self, path: str | Path) -> list[Example]:
        path = Path(path)
        content = read_file(path)
        kind = kind_of(content)
        if kind != self.kind:
            what = A_KIND[kind] if kind else "neither an image, a recording nor text"
            raise DataError(f"{path}: {what}, but this model takes {KINDS[self.kind]}")
        return self.examples(path, content)


class Images(Domain):
    """MNIST digits: any image brought to 28 x 28 grey as MNIST was made (uint8)."""

    kind = "image"

    def examples(self, path: Path, content: bytes) -> list[Example]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(content)) as image:
                image.load()
                size, mode = image.size, image.mode
                if mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                    paper = Image.new("RGBA", size, "white")  # transparent = paper
                    image = Image.alpha_composite(paper, image.convert("RGBA"))
                grey = np.asarray(image.convert("L"))
        except UnidentifiedImageError:
            raise DataError(f"{path}: unreadable or corrupt image (not decodable)") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{path}: unreadable or corrupt image ({exc})") from None
        notes = {} if (size, mode) == ((28, 28), "L") else {"converted_from": f"{size[0]}x{size[1]} {mode}"}
        return [Example(str(path), torch.from_numpy(mnist.as_mnist_digit(grey)).unsqueeze(0), notes)]


class Recordings(Domain):
    """Spoken words: resampled, trimmed and fitted, then the dataset's spectrogram settings
    and normalisation, all from its manifest."""

    kind = "audio"

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.rate = int(manifest["sample_rate"])
        self.trim_db = manifest.get("trim_db")
        self.features = Spectrograms(manifest["features"], self.rate)
        self.normalization = manifest["features"].get("normalization", {"mode": "none"})

    def examples(self, path: Path, content: bytes) -> list[Example]:
        wave, rate = read_wav(path, content)
        clip = Clip(wave, rate, -1, "", "", str(path))
        fit_clips([clip], self.rate, self.trim_db, self.features.samples)
        x = normalize_like(self.features(clip.wave[None, :]), self.normalization)
        notes = {"seconds": round(len(wave) / rate, 3)}
        if rate != self.rate:
            notes["resampled_from_hz"] = rate
        return [Example(str(path), x[0], notes)]


class Texts(Domain):
    """Reviews, one a line: the training tokenizer and vocabulary; unknown words are kept
    as `<unk>` (as in training) and listed."""

    kind = "text"

    def __init__(self, data_dir: Path, manifest: dict[str, Any]) -> None:
        self.vocab = text.read_vocab(data_dir, manifest)
        self.known = set(self.vocab[2:])
        self.max_len = int(manifest["max_len"])

    def examples(self, path: Path, content: bytes) -> list[Example]:
        try:
            lines = content.decode("utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc})") from None
        out = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            tokens = text.tokenize(line)
            unknown = [t for t in tokens if t not in self.known]
            notes: dict[str, Any] = {"unknown_words": len(unknown), "unknown": unknown}
            if len(tokens) > self.max_len:
                notes["truncated_to"] = self.max_len
            out.append(Example(f"{path}:{number}", text.encode([tokens], self.vocab, self.max_len)[0],
                               notes))
        if not out:
            raise DataError(f"{path}: no text in it (one review a line)")
        return out


def domain_for(data_dir: Path, manifest: dict[str, Any]) -> Domain:
    """The domain of a prepared dataset, by what its manifest holds."""
    if "vocab_file" in manifest:
        return Texts(data_dir, manifest)
    if "sample_rate" in manifest and "features" in manifest:
        return Recordings(manifest)
    if list(manifest.get("input_shape", [])) == [1, mnist.SIZE, mnist.SIZE]:
        return Images()
    raise DataError(f"{data_dir / 'manifest.json'}: not a dataset predict knows (images 1 x 28 "
                    "x 28, spectrograms with sample_rate and features, or text with vocab_file)")
