"""Run a stage script in process, through the stage contract, on the real conf/ composed with
overrides: what DVC runs, minus the subprocess."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from cnnlab.core.stage import Stage, StageResult
from cnnlab.models import InputSpec, build_model, count_parameters
from cnnlab.training.checkpoint import save_checkpoint
from tests.conftest import ROOT


def load_stage(script: str) -> Stage:
    path = ROOT / "pipelines" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"pipelines_{script}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_stage(script: str, *overrides: str) -> StageResult:
    """`python pipelines/<script>.py <overrides>`, in this process."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return load_stage(script).run(cfg)


TINY_CNN = {"name": "convnet", "conv": [{"channels": 4, "kernel": 3}, {"channels": 6, "kernel": 3}],
            "downsample": "max", "pool": 2, "head": "flatten", "hidden": [8]}
TINY_DNN = {"name": "mlp", "hidden": [16]}


def save_untrained(path: Path, model_cfg: dict, name: str) -> int:
    """A checkpoint of an untrained digit model, seeded (analysis stages need only its
    shape); returns its parameter count."""
    torch.manual_seed(0)
    spec = InputSpec((1, 28, 28), 10)
    model = build_model(model_cfg, spec)
    save_checkpoint(path, model, model_cfg, spec, [str(d) for d in range(10)], name)
    return count_parameters(model)
