"""Checks of config values shared by the audio modules; each error names the key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cnnlab.core.errors import ConfigError


def choice(cfg: Mapping[str, Any], key: str, allowed: Sequence[str], where: str) -> str:
    value = cfg[key]
    if value not in allowed:
        raise ConfigError(f"{where}.{key}={value!r}: choose one of {list(allowed)}")
    return value


def value_range(cfg: Mapping[str, Any], key: str, where: str, default: float | None = None
                ) -> tuple[float, float]:
    """A number or [low, high] as (low, high); `default` only for a key the section lacks."""
    value = cfg.get(key) if default is not None else cfg[key]
    if value is None and default is not None:
        return default, default
    if isinstance(value, (int, float)):
        return float(value), float(value)
    if (isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2
            or not all(isinstance(v, (int, float)) for v in value) or value[0] > value[1]):
        raise ConfigError(f"{where}.{key}={value!r}: expected a number or [low, high]")
    return float(value[0]), float(value[1])
