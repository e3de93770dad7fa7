"""Checkpoints as plain tensors and primitives, so they load with `weights_only=True`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import CheckpointError, CnnlabError
from cnnlab.core.io import save_torch
from cnnlab.models import InputSpec, build_model


def save_checkpoint(path: str | Path, model: nn.Module, model_cfg: dict[str, Any],
                    spec: InputSpec, classes: list[str], experiment: str) -> None:
    save_torch(path, {
        "experiment": experiment,
        "model_cfg": model_cfg,
        "input_shape": list(spec.input_shape),
        "classes": classes,
        "extras_shapes": {k: list(v.shape) for k, v in spec.extras.items()},
        "state_dict": model.state_dict(),
    })


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode; a bad file names itself in the error."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint is missing (run the train stage first)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        meta = {k: v for k, v in blob.items() if k != "state_dict"}
        extras = {k: torch.zeros(shape) for k, shape in blob["extras_shapes"].items()}
        spec = InputSpec(tuple(blob["input_shape"]), len(blob["classes"]), extras)
        model = build_model(blob["model_cfg"], spec)
        model.load_state_dict(blob["state_dict"])
    except CnnlabError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - unpickling and key errors come in many types
        raise CheckpointError(f"{path}: not a readable cnnlab checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    return model.eval(), meta
