"""A stage from the command line: an override Hydra cannot compose is one line naming it, and
exit code 2, as every other stage error."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pytest

from cnnlab.core.stage import StageContext, StageResult, stage
from tests.conftest import ROOT


@dataclass
class NoSettings:
    pass


@stage("toy", section="paths", schema=NoSettings)
def toy(cfg: dict, ctx: StageContext) -> StageResult:
    raise AssertionError("a stage whose config did not compose must not run")


@pytest.mark.parametrize("override,why", [
    ("train.mnist_cnn.trainer.lrr=0.1", "Key 'lrr' is not in struct"),  # a typo in a key
    ("analysis.params_report.new_key=1", "use +analysis.params_report.new_key=1"),  # no `+`
    ("train.mnist_cnn.trainer.lr=[", "no viable alternative"),  # not the override grammar
    ("paths.models", "missing EQUAL"),
    ("hydra/launcher=nope", "Could not find 'hydra/launcher/nope'"),
])
def test_a_bad_override_is_one_line_naming_it_and_exit_code_2(override, why, monkeypatch,
                                                               capsys):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "pipelines" / "toy.py"), override])
    with pytest.raises(SystemExit) as stop:
        toy()
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    assert err.startswith(f"error: {override}: ") and err.count("\n") == 1, err
    assert why in err
    assert "HYDRA_FULL_ERROR" not in os.environ  # set while Hydra composes, then put back
