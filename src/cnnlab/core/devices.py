"""Where a stage computes: devices from the config, checked before any work, and the ranks of
a multi-process (DDP) run.

`trainer` keys mirror Lightning's `Trainer` (accelerator, devices, strategy, num_nodes,
precision); the analysis stages take one `device`. `auto` means a GPU when there is one.

Determinism policy: on the CPU every run is bit-identical (`deterministic=True`). On CUDA,
`CUBLAS_WORKSPACE_CONFIG` is set and deterministic algorithms are asked for with a warning,
not an error, where an op has no deterministic kernel (`deterministic="warn"`), so a GPU run
never dies of it; such a run is repeatable up to those ops.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from cnnlab.core.errors import ConfigError

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32-true", "64-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
GPU_ONLY_PRECISIONS = ("16-mixed", "16-true")  # fp16 autocast: CUDA only


def accelerator_kind(accelerator: str) -> str:
    """`cpu`, `cuda` or `mps`: what `accelerator` means on this machine."""
    if accelerator == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if torch.backends.mps.is_available() else "cpu"
    return "cuda" if accelerator == "gpu" else accelerator


def resolve_device(name: str, key: str) -> torch.device:
    """An analysis stage's `device` (auto | cpu | cuda | cuda:N | mps) as a torch.device."""
    kind = accelerator_kind(name.split(":")[0]) if name.split(":")[0] in ACCELERATORS else None
    if kind is None:
        raise ConfigError(f"{key}={name!r}: choose auto, cpu, cuda, cuda:<index> or mps")
    index = name.partition(":")[2]
    if kind == "cuda":
        count = torch.cuda.device_count()
        wanted = int(index) + 1 if index.isdigit() else 1
        if wanted > count:
            raise ConfigError(f"{key}={name!r}: this machine has {count} CUDA device(s)")
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}={name!r}: MPS is not available on this machine")
    return torch.device(f"{kind}:{index}" if index else kind)


def check_trainer(cfg: Mapping[str, Any], key: str = "trainer") -> str:
    """Refuse device settings that cannot run here, naming the key; returns the device kind."""
    from lightning.pytorch.strategies import StrategyRegistry

    accelerator, devices = cfg["accelerator"], cfg["devices"]
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"{key}.accelerator={accelerator!r}: choose one of {list(ACCELERATORS)}")
    kind = accelerator_kind(accelerator)
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}.accelerator={accelerator!r}: no CUDA device on this machine")
    strategies = ["auto", *sorted(StrategyRegistry.available_strategies())]
    if cfg["strategy"] not in strategies:
        raise ConfigError(f"{key}.strategy={cfg['strategy']!r}: unknown; choose auto, ddp, "
                          "ddp_spawn, fsdp, deepspeed or another of Lightning's strategies")
    count = device_count(devices, f"{key}.devices")
    if kind == "cuda" and count > torch.cuda.device_count():
        raise ConfigError(f"{key}.devices={devices!r}: this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    if int(cfg["num_nodes"]) < 1:
        raise ConfigError(f"{key}.num_nodes={cfg['num_nodes']!r}: must be at least 1")
    precision = str(cfg["precision"])
    if precision not in PRECISIONS:
        raise ConfigError(f"{key}.precision={precision!r}: choose one of {list(PRECISIONS)}")
    if precision in GPU_ONLY_PRECISIONS and kind != "cuda":
        raise ConfigError(f"{key}.precision={precision!r} needs a CUDA device; on {kind} use "
                          "bf16-mixed or 32-true")
    return kind


def device_count(devices: Any, key: str) -> int:
    if devices in ("auto", -1):
        return torch.cuda.device_count() if torch.cuda.is_available() else 1
    if isinstance(devices, list) and all(isinstance(d, int) and d >= 0 for d in devices):
        return len(devices)
    if isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        return devices
    raise ConfigError(f"{key}={devices!r}: a number of devices, a list of indices, -1 or auto")


def deterministic_mode(kind: str) -> bool | str:
    """Lightning's `deterministic` for this device kind (see the module docstring)."""
    if kind == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        return "warn"
    return True


def is_rank_zero() -> bool:
    """True unless this process is a non-zero rank of a multi-process run.

    torchrun sets RANK, SLURM sets SLURM_PROCID, Lightning's own launcher sets LOCAL_RANK and
    NODE_RANK in the processes it starts.
    """
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name]) == 0
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in ("LOCAL_RANK", "NODE_RANK"))
