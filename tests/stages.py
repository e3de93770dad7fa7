"""Run a stage script in process, through the stage contract, on the real conf/ composed with
overrides: what DVC runs, minus the subprocess."""

from __future__ import annotations

import importlib.util

from hydra import compose, initialize_config_dir

from cnnlab.core.stage import Stage, StageResult
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
