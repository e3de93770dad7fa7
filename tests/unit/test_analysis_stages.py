"""The analysis stages on a tiny random CNN: their outputs, numbers, tracking and errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from matplotlib.image import imread
from mlflow.tracking import MlflowClient

from cnnlab.analysis.hierarchy import run_hierarchy
from cnnlab.analysis.invariance import run_invariance
from cnnlab.analysis.visualize import PAD_RGB, run_classes, run_units
from cnnlab.core.errors import CheckpointError, DataError
from cnnlab.models import InputSpec, build_model
from cnnlab.training.checkpoint import save_checkpoint
from tests.conftest import ROOT, compose_config

TINY_CNN = {"name": "convnet", "conv": [{"channels": 4, "kernel": 3}, {"channels": 6, "kernel": 3}],
            "downsample": "max", "pool": 2, "head": "flatten", "hidden": [8]}
TINY_DNN = {"name": "mlp", "hidden": [16]}
FAST = {"steps": 15, "max_test": 200, "threads": 1}


def save_tiny(path, cfg, name):
    torch.manual_seed(0)
    spec = InputSpec((1, 28, 28), 10)
    save_checkpoint(path, build_model(cfg, spec), cfg, spec, [str(i) for i in range(10)], name)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"cnn": save_tiny(root / "cnn.ckpt", TINY_CNN, "tiny_cnn"),
            "dense": save_tiny(root / "dnn.ckpt", TINY_DNN, "tiny_dnn")}


def stage_cfg(name, **changes):
    """The stage's real config from conf/, shrunk to run in a moment."""
    cfg = compose_config()["analysis"][name]
    for key, value in {**FAST, **changes}.items():
        if key in cfg or key in changes:
            cfg[key] = value
    return cfg


def dvc_outputs(stage):
    """File names under reports/<stage>/ that dvc.yaml declares for the stage."""
    body = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    names = set()
    for kind in ("outs", "metrics", "plots"):
        for entry in body.get(kind, []):
            path = entry if isinstance(entry, str) else next(iter(entry))
            names.add(path.removeprefix(f"reports/{stage}/"))
    return names


def written(out_dir):
    return {p.name for p in out_dir.iterdir()}


def count_tiles(png, tile, pad, scale):
    """Tiles of a grid image: slots whose top-left pixel is grey rather than the padding."""
    rgb = (imread(png)[..., :3] * 255).round().astype(np.uint8)
    step = (tile + pad) * scale
    slots = [rgb[(pad + r * (tile + pad)) * scale, (pad + c * (tile + pad)) * scale]
             for r in range(rgb.shape[0] // step) for c in range(rgb.shape[1] // step)]
    assert all(tuple(s) == PAD_RGB or s[0] == s[1] == s[2] for s in slots)
    return sum(tuple(s) != PAD_RGB for s in slots)


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_filters_stage_draws_one_tile_per_filter_and_measures_each(tmp_path, checkpoints,
                                                                   tiny_mnist):
    out = tmp_path / "filters"
    metrics = run_units("filters", stage_cfg("filters"), checkpoints["cnn"], tiny_mnist, out,
                        track=False)
    assert written(out) == dvc_outputs("filters")
    assert count_tiles(out / "conv1.png", 28, 1, 3) == 4
    assert count_tiles(out / "conv2.png", 28, 1, 3) == 6
    images = torch.load(out / "images.pt", weights_only=True)
    assert images["conv1"].shape == (4, 1, 28, 28) and images["conv2"].shape == (6, 1, 28, 28)
    rows = (out / "units.csv").read_text().splitlines()
    assert rows[0].startswith("layer,unit,start,synthetic,best_real") and len(rows) == 1 + 10
    for layer in ("conv1", "conv2"):
        s = metrics["layers"][layer]
        assert s["kind"] == "filter" and s["units"] == {"conv1": 4, "conv2": 6}[layer]
        assert s["raised"] >= 0.5 and 0 <= s["beats_every_digit"] <= 1
    claims = json.loads((out / "claims.json").read_text())
    assert [c["experiment"] for c in claims] == ["filters tiny_cnn:conv1", "filters tiny_cnn:conv2"]
    assert all(c["holds"] == (c["value"] > 1) for c in claims)
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))


def test_units_beat_the_real_digits_they_are_compared_with(tmp_path, checkpoints, tiny_mnist):
    """Synthetic activation vs the best real digit, both recomputed from the saved images."""
    from cnnlab.analysis.ascent import LayerProbe, max_over_inputs, relu, unit_activations
    from cnnlab.analysis.visualize import load_inputs

    out = tmp_path / "neurons"
    run_units("neurons", stage_cfg("neurons", steps=40), checkpoints["cnn"], tiny_mnist, out,
              track=False)
    assert written(out) == dvc_outputs("neurons")
    assert count_tiles(out / "fc1.png", 28, 1, 3) == 8
    inputs = load_inputs(checkpoints["cnn"], tiny_mnist, 200)
    images = torch.load(out / "images.pt", weights_only=True)["fc1"]
    with LayerProbe(inputs.model, "fc1") as probe, torch.no_grad():
        reached = unit_activations(probe(images), relu).diagonal()
    best, _ = max_over_inputs(inputs.model, "fc1", inputs.test_x, relu)
    rows = [line.split(",") for line in (out / "units.csv").read_text().splitlines()[1:]]
    torch.testing.assert_close(torch.tensor([float(r[3]) for r in rows]), reached,
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(torch.tensor([float(r[4]) for r in rows]), best,
                               atol=1e-4, rtol=1e-4)
    assert (reached > best).float().mean() >= 0.5


def test_classes_stage_few_ink_lowers_the_ink(tmp_path, checkpoints, tiny_mnist):
    out = tmp_path / "classes"
    cfg = stage_cfg("classes")
    cfg["ascent"]["steps"] = 40
    metrics = run_classes(cfg, checkpoints["cnn"], tiny_mnist, out, track=False)
    assert written(out) == dvc_outputs("classes")
    assert count_tiles(out / "classes.png", 28, 1, 3) == 30  # 10 free, 10 few-ink, 10 means
    free, few = metrics["unconstrained"], metrics["few_ink"]
    assert few["ink_fraction"] < free["ink_fraction"]
    assert few["mean_intensity"] < free["mean_intensity"]
    claims = json.loads((out / "claims.json").read_text())
    assert len(claims) == 3 and claims[1]["holds"] is True
    assert claims[0]["holds"] == (free["min_confidence"] >= cfg["fooled_confidence"])
    rows = (out / "classes.csv").read_text().splitlines()
    assert len(rows) == 1 + 30


def test_hierarchy_stage_reuses_the_images_and_measures_growth(tmp_path, checkpoints,
                                                               tiny_mnist):
    reports = tmp_path / "reports"
    for name in ("filters", "neurons"):
        run_units(name, stage_cfg(name, steps=2), checkpoints["cnn"], tiny_mnist,
                  reports / name, track=False)
    out = reports / "hierarchy"
    metrics = run_hierarchy(stage_cfg("hierarchy", digits=4), checkpoints["cnn"], tiny_mnist,
                            [reports / "filters/images.pt", reports / "neurons/images.pt"], out,
                            track=False)
    assert written(out) == dvc_outputs("hierarchy")
    assert [metrics[k]["receptive_field"] for k in ("conv1", "conv2", "fc1")] == [3, 8, 28]
    spreads = [metrics[k]["gradient_spread"] for k in ("conv1", "conv2", "fc1")]
    claim = json.loads((out / "claims.json").read_text())[0]
    assert claim["holds"] == (spreads[0] < spreads[1] < spreads[2])


def test_invariance_stage_writes_one_shift_curve_per_network(tmp_path, checkpoints, tiny_mnist):
    out = tmp_path / "invariance"
    metrics = run_invariance(stage_cfg("invariance", max_shift=2), checkpoints, tiny_mnist, out,
                             track=False)
    assert written(out) == dvc_outputs("invariance")
    assert written(out / "shift") == {"tiny_cnn.csv", "tiny_dnn.csv"}
    curve = (out / "shift/tiny_cnn.csv").read_text().splitlines()
    assert curve[0] == "shift,accuracy" and len(curve) == 1 + 3
    assert float(curve[1].split(",")[1]) == pytest.approx(metrics["cnn"]["clean"])
    assert set(metrics["cnn"]["subsampled"]) == {"nearest", "bilinear"}
    claims = json.loads((out / "claims.json").read_text())
    assert claims[0]["holds"] == (metrics["cnn"]["mean_shift_drop"]
                                  < metrics["dense"]["mean_shift_drop"])


def test_a_stage_logs_its_numbers_and_figures_to_mlflow(tmp_path, checkpoints, tiny_mnist):
    out = tmp_path / "classes"
    cfg = stage_cfg("classes")
    cfg["ascent"]["steps"] = 3
    metrics = run_classes(cfg, checkpoints["cnn"], tiny_mnist, out)
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("analysis").experiment_id])
    assert run.info.run_name == "classes"
    assert run.data.metrics["few_ink.ink_fraction"] == pytest.approx(
        metrics["few_ink"]["ink_fraction"])
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "classes")}
    assert {"classes/classes.png", "classes/claims.json", "classes/metrics.json"} <= logged


@pytest.mark.parametrize("content", [None, b"not a checkpoint"])
def test_missing_or_corrupt_checkpoint_names_the_file_and_writes_nothing(tmp_path, tiny_mnist,
                                                                        content):
    path = tmp_path / "models" / "model.ckpt"
    if content is not None:
        path.parent.mkdir()
        path.write_bytes(content)
    for run in (lambda out: run_units("filters", stage_cfg("filters"), path, tiny_mnist, out),
                lambda out: run_classes(stage_cfg("classes"), path, tiny_mnist, out),
                lambda out: run_invariance(stage_cfg("invariance"), {"cnn": path, "dense": path},
                                           tiny_mnist, out)):
        with pytest.raises(CheckpointError, match=str(path)):
            run(tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_hierarchy_without_the_filters_stage_names_the_missing_file(tmp_path, checkpoints,
                                                                     tiny_mnist):
    missing = tmp_path / "reports/filters/images.pt"
    with pytest.raises(DataError, match=str(missing)):
        run_hierarchy(stage_cfg("hierarchy"), checkpoints["cnn"], tiny_mnist, [missing],
                      tmp_path / "hierarchy")


def test_stage_script_reports_a_missing_checkpoint_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "pipelines/filters.py", f"paths.models={tmp_path}",
         f"paths.reports={tmp_path / 'reports'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'mnist_cnn' / 'model.ckpt'}: checkpoint is missing "
        "(run the train stage first)"]
    assert not (tmp_path / "reports").exists()
