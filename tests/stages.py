"""Run a stage script in process, through the stage contract, on the real conf/ composed with
overrides: what DVC runs, minus the subprocess."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from cnnlab.core.stage import Stage, StageResult
from cnnlab.models import InputSpec, build_model, count_parameters
from cnnlab.training.checkpoint import save_checkpoint
from tests.conftest import ROOT, compose_conf


def load_stage(script: str) -> Stage:
    path = ROOT / "pipelines" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"pipelines_{script}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def run_stage(script: str, *overrides: str) -> StageResult:
    """`python pipelines/<script>.py <overrides>`, in this process."""
    return load_stage(script).run(compose_conf(*overrides))


def run_script(script: str, *args: str) -> int:
    """`python pipelines/<script>.py <args>` in this process: the script's command-line entry
    point (Stage.__call__: Hydra's command line, one-line errors, exit codes), minus the Python
    start. Returns the exit code; what it printed is the test's (capsys, capfd)."""
    argv = sys.argv
    sys.argv = [str(ROOT / "pipelines" / f"{script}.py"), *args]
    try:
        load_stage(script)()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        sys.argv = argv
    return 0


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
