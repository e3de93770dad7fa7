"""The prepared-dataset format every training run reads, whatever the domain.

A prepared dataset is a directory with `train.pt`, `val.pt`, `test.pt` (each a dict with
tensors `x` and int64 labels `y`), `manifest.json` (at least `classes` and `input_shape`)
and optionally `extras.pt` (named tensors a model may need, e.g. pretrained embeddings).
Images are stored as uint8 and scaled to [0, 1] per batch; other domains store float or
token ids as they are.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab.core.errors import DataError
from cnnlab.core.io import save_torch, sha256_file, write_json

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"split has {len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class PreparedData:
    train: Split
    val: Split
    test: Split
    manifest: dict[str, Any]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest["input_shape"])


def class_counts(y: torch.Tensor, classes: list[str]) -> dict[str, int]:
    counts = Counter(y.tolist())
    return {name: counts.get(i, 0) for i, name in enumerate(classes)}


def write_prepared(out_dir: Path, splits: dict[str, Split], manifest: dict[str, Any],
                   extras: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Write the splits into `out_dir` (normally the temporary dir of `atomic_dir`).

    Adds per-split counts per class and sha256 of every written file to the manifest.
    """
    classes = list(manifest["classes"])
    manifest = dict(manifest)
    manifest["counts"] = {name: class_counts(s.y, classes) for name, s in splits.items()}
    manifest["sizes"] = {name: len(s) for name, s in splits.items()}
    files = {}
    for name, split in splits.items():
        save_torch(out_dir / f"{name}.pt", {"x": split.x.contiguous(), "y": split.y.long()})
        files[f"{name}.pt"] = sha256_file(out_dir / f"{name}.pt")
    if extras:
        save_torch(out_dir / "extras.pt", extras)
        files["extras.pt"] = sha256_file(out_dir / "extras.pt")
    manifest["files"] = files
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def read_manifest(data_dir: Path) -> dict[str, Any]:
    """`manifest.json` of a prepared dataset; a missing or unreadable one names itself."""
    path = data_dir / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path}: manifest is missing (run the prepare stage first)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:  # UnicodeDecodeError and JSONDecodeError are both
        raise DataError(f"{path}: manifest is not readable JSON ({exc}; re-run its prepare "
                        "stage)") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict):
        raise DataError(f"{path}: not a prepared-data manifest (expected an object with "
                        "'files' mapping names to sha256; re-run its prepare stage)")
    return manifest


def _load_pt(path: Path, sha256: str | None) -> Any:
    """Load the tensors of `path`, first checking its bytes against `sha256` (when recorded).

    The file is read once: the same bytes are hashed and then unpickled.
    """
    if not path.is_file():
        raise DataError(f"{path}: prepared file is missing (run the prepare stage first)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read prepared file ({exc})") from exc
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DataError(f"{path}: sha256 does not match manifest.json (altered or truncated; "
                        "re-run its prepare stage)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise DataError(f"{path}: cannot load prepared tensors ({exc})") from exc


def load_prepared(data_dir: str | Path) -> PreparedData:
    """The prepared dataset in `data_dir`, each file checked against the sha256 that
    `write_prepared` recorded in the manifest (a manifest without them loads unchecked)."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    hashes = manifest.get("files")

    def load(name: str) -> Any:
        if hashes is None:  # older data: no hashes recorded, nothing to check against
            return _load_pt(data_dir / name, None)
        if name not in hashes:
            raise DataError(f"{data_dir / name}: not listed in manifest.json (re-run its "
                            "prepare stage)")
        return _load_pt(data_dir / name, str(hashes[name]))

    splits = {}
    for name in SPLITS:
        blob = load(f"{name}.pt")
        try:
            splits[name] = Split(blob["x"], blob["y"])
        except (TypeError, KeyError, IndexError) as exc:
            raise DataError(f"{data_dir / name}.pt: expected a dict with tensors 'x' and 'y' "
                            f"({type(exc).__name__}: {exc})") from exc
        except DataError as exc:
            raise DataError(f"{data_dir / name}.pt: {exc}") from exc
    extras = load("extras.pt") if (data_dir / "extras.pt").exists() else {}
    return PreparedData(**splits, manifest=manifest, extras=extras)
