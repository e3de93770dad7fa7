"""Model builders by name: a new architecture is one registered function plus a config file."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError


@dataclass(frozen=True)
class InputSpec:
    """What a model builder knows about its data."""

    input_shape: tuple[int, ...]  # one example, without the batch dimension
    num_classes: int
    extras: Mapping[str, torch.Tensor] = field(default_factory=dict)


Builder = Callable[[Mapping[str, Any], InputSpec], nn.Module]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def decorate(fn: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"model '{name}' registered twice")
        _BUILDERS[name] = fn
        return fn

    return decorate


def build_model(cfg: Mapping[str, Any], spec: InputSpec) -> nn.Module:
    """Build the model named by `cfg['name']`; geometry errors surface here, before training."""
    name = cfg.get("name")
    if name not in _BUILDERS:
        raise ConfigError(f"model.name={name!r} is unknown; choose one of {sorted(_BUILDERS)}")
    return _BUILDERS[name](cfg, spec)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
