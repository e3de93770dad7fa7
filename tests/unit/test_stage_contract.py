"""The stage contract: config checked before work, outputs published only on success, metrics
and claims written once, one MLflow run per stage."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from cnnlab.core import environment
from cnnlab.core.claims import Claim, read_claims
from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.stage import StageContext, StageResult, stage, validate


@dataclass
class Inner:
    size: int
    names: list[str]


@dataclass
class ToyConfig:
    scale: float
    label: str | None
    inner: Inner


GOOD = {"scale": 2, "label": None, "inner": {"size": 3, "names": ["a", "b"]}}


@pytest.mark.parametrize("change,message", [
    ({"scale": "big"}, r"^toy\.scale: Value 'big'"),
    ({"inner": {"size": 3.5, "names": []}}, r"^toy\.inner\.size: "),
    ({"colour": "red"}, r"^toy\.colour: Key 'colour' not in 'ToyConfig'"),
    ({"inner": {"size": 1, "names": [], "extra": 0}}, r"^toy\.inner\.extra: "),
])
def test_a_wrong_type_or_unknown_key_is_named(change, message):
    with pytest.raises(ConfigError, match=message):
        validate({**GOOD, **change}, ToyConfig, "toy")


def test_missing_keys_are_named_and_good_values_come_back_plain():
    with pytest.raises(ConfigError, match=r"^toy\.inner\.names: missing"):
        validate({**GOOD, "inner": {"size": 1}}, ToyConfig, "toy")
    assert validate(GOOD, ToyConfig, "toy") == {**GOOD, "scale": 2.0}


def make_toy_stage(fail_after_writing: bool):
    @stage("toy", section="analysis.toy", schema=ToyConfig)
    def toy(cfg: dict, ctx: StageContext) -> StageResult:
        out = ctx.out_dir(ctx.paths.reports / "toy")
        (out / "figure.txt").write_text(f"scale {cfg['scale']}")
        (ctx.out_file(ctx.paths.plots / "toy.csv")).write_text("x,y\n1,2\n")
        if fail_after_writing:
            raise DataError("input.csv: truncated")
        return StageResult({"area": cfg["scale"] * cfg["inner"]["size"], "note": "text"},
                           [Claim("toys scale", "toy", "area 6", 6.0, True)], ["toy: done"])

    return toy


def toy_config(root: Path, interval: float = 0, **changes):
    paths = {k: str(root / k) for k in ("prepared", "models", "metrics", "plots", "reports")}
    return OmegaConf.create({"paths": paths, "analysis": {"toy": {**GOOD, **changes}},
                             "tracking": {"system_metrics_interval": interval}})


def test_success_publishes_outputs_metrics_claims_and_one_run(tmp_path, capsys):
    result = make_toy_stage(False).run(toy_config(tmp_path))
    assert (tmp_path / "reports/toy/figure.txt").read_text() == "scale 2.0"
    assert read_claims(tmp_path / "reports/toy/claims.json") == result.claims
    assert (tmp_path / "metrics/toy.json").read_text() == (
        '{\n  "area": 6.0,\n  "note": "text"\n}\n')
    assert capsys.readouterr().out == "toy: done\n"
    assert not [p for p in tmp_path.rglob(".*")]  # no staging folder or file is left
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("analysis").experiment_id])
    assert run.info.run_name == "toy" and run.info.status == "FINISHED"
    assert run.data.params == {"scale": "2.0", "label": "None", "inner.size": "3",
                               "inner.names": "['a', 'b']"}
    assert run.data.metrics == {"area": 6.0}  # numbers only
    logged = {a.path for d in ("toy", "plots", "metrics")
              for a in client.list_artifacts(run.info.run_id, d)}
    assert {"toy/figure.txt", "toy/claims.json", "plots/toy.csv", "metrics/toy.json"} <= logged


def test_a_failure_keeps_the_previous_outputs_and_marks_the_run_failed(tmp_path):
    make_toy_stage(False).run(toy_config(tmp_path))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "mlflow" not in
              p.name}
    with pytest.raises(DataError, match="input.csv"):
        make_toy_stage(True).run(toy_config(tmp_path, scale=5))
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "mlflow" not in
             p.name}
    assert after == before
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("analysis").experiment_id],
                              order_by=["attributes.start_time"])
    assert [r.info.status for r in runs] == ["FINISHED", "FAILED"]


def test_a_bad_config_stops_before_any_output_or_run(tmp_path):
    with pytest.raises(ConfigError, match=r"analysis\.toy\.scale"):
        make_toy_stage(False).run(toy_config(tmp_path, scale="x"))
    assert not (tmp_path / "reports").exists() and not (tmp_path / "metrics").exists()
    assert MlflowClient().search_experiments(filter_string="name='analysis'") == []


def test_a_failure_in_a_fresh_project_leaves_no_empty_folders(tmp_path):
    with pytest.raises(DataError):
        make_toy_stage(True).run(toy_config(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlflow.db.lock"]


def test_a_run_carries_its_environment_and_system_metrics(tmp_path):
    """Through the contract, as every stage: `cnnlab.env.*` tags from the start, and MLflow's
    system metrics every `tracking.system_metrics_interval` seconds while the stage works."""
    client = MlflowClient()

    @stage("busy", section="analysis.toy", schema=ToyConfig)
    def busy(cfg: dict, ctx: StageContext) -> StageResult:
        from cnnlab.core.tracking.runs import active_run_id

        run_id, deadline = active_run_id(), time.monotonic() + 20
        while "system/cpu_utilization_percentage" not in client.get_run(run_id).data.metrics:
            assert time.monotonic() < deadline, "no system metrics within 20 s"
            time.sleep(0.05)
        return StageResult({"area": 1.0})

    busy.run(toy_config(tmp_path, interval=0.05))
    (run,) = client.search_runs([client.get_experiment_by_name("analysis").experiment_id])
    assert run.info.status == "FINISHED"
    assert environment.from_tags(run.data.tags).keys() == set(environment.KEYS)
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        run.data.metrics)
    assert not [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor"]


@pytest.mark.parametrize("interval", [-1, "often"])
def test_a_bad_system_metrics_interval_is_named_before_any_run(tmp_path, interval):
    with pytest.raises(ConfigError, match=r"^tracking\.system_metrics_interval"):
        make_toy_stage(False).run(toy_config(tmp_path, interval=interval))
    assert MlflowClient().search_experiments(filter_string="name='analysis'") == []
