"""The prepared-dataset format every training run reads, whatever the domain.

A prepared dataset is a directory with `train.pt`, `val.pt`, `test.pt` (each a dict with
tensors `x` and int64 labels `y`), `manifest.json` (at least `classes` and `input_shape`)
and optionally `extras.pt` (named tensors a model may need, e.g. pretrained embeddings).
Images are stored as uint8 and scaled to [0, 1] per batch; other domains store float or
token ids as they are.
"""

from __future__ import annotations

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


def _load_pt(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: prepared file is missing (run the prepare stage first)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt file
        raise DataError(f"{path}: cannot load prepared tensors ({exc})") from exc


def load_prepared(data_dir: str | Path) -> PreparedData:
    data_dir = Path(data_dir)
    manifest_path = data_dir / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{manifest_path}: manifest is missing (run the prepare stage first)")
    manifest = json.loads(manifest_path.read_text())
    splits = {}
    for name in SPLITS:
        blob = _load_pt(data_dir / f"{name}.pt")
        splits[name] = Split(blob["x"], blob["y"])
    extras = _load_pt(data_dir / "extras.pt") if (data_dir / "extras.pt").exists() else {}
    return PreparedData(**splits, manifest=manifest, extras=extras)
