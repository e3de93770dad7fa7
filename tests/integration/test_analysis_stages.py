"""The analysis stages on a tiny random CNN, run through the stage contract: their outputs,
numbers, claims, tracking and errors."""

import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from mlflow.tracking import MlflowClient

from cnnlab.analysis.grids import PAD_RGB
from cnnlab.analysis.trained import load_inputs
from cnnlab.core.errors import CheckpointError, ConfigError, DataError
from tests.stages import TINY_CNN, TINY_DNN, run_script, run_stage, save_untrained

pytestmark = pytest.mark.usefixtures("one_thread")  # small convolutions: one thread



@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_untrained(root / "tiny_cnn" / "model.ckpt", TINY_CNN, "tiny_cnn")
    save_untrained(root / "tiny_dnn" / "model.ckpt", TINY_DNN, "tiny_dnn")
    return root


@pytest.fixture
def project(tmp_path, models, tiny_mnist):
    """Path overrides: the tiny models and data in, every output under tmp_path."""
    return tmp_path, [f"paths.models={models}", f"paths.prepared={tiny_mnist.parent}",
                      *(f"paths.{k}={tmp_path / k}" for k in ("reports", "metrics", "plots"))]


def fast(name, **changes):
    """Overrides that point stage `name` at the tiny CNN and shrink it to run in a moment."""
    return [f"analysis.{name}.{k}={v}" for k, v in {"threads": 1, **changes}.items()]


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


def test_filters_stage_draws_one_tile_per_filter_and_measures_each(project):
    root, paths = project
    result = run_stage("units", "run=filters", *paths,
                       *fast("filters", experiment="tiny_cnn", steps=15, max_test=200))
    out = root / "reports" / "filters"
    assert written(out) == {"conv1.png", "conv2.png", "images.pt", "units.csv", "filters.md",
                            "claims.json"}
    assert count_tiles(out / "conv1.png", 28, 1, 3) == 4
    assert count_tiles(out / "conv2.png", 28, 1, 3) == 6
    images = torch.load(out / "images.pt", weights_only=True)
    assert images["conv1"].shape == (4, 1, 28, 28) and images["conv2"].shape == (6, 1, 28, 28)
    rows = (out / "units.csv").read_text().splitlines()
    assert rows[0].startswith("layer,unit,start,synthetic,best_real") and len(rows) == 1 + 10
    for layer in ("conv1", "conv2"):
        s = result.metrics["layers"][layer]
        assert s["kind"] == "filter" and s["units"] == {"conv1": 4, "conv2": 6}[layer]
        assert s["raised"] >= 0.5
    claims = json.loads((out / "claims.json").read_text())
    assert [c["experiment"] for c in claims] == ["filters tiny_cnn:conv1", "filters tiny_cnn:conv2"]
    assert all(c["holds"] == (c["value"] > 1) for c in claims)
    assert json.loads((root / "metrics" / "filters.json").read_text()) == json.loads(
        json.dumps(result.metrics))


def test_units_beat_the_real_digits_they_are_compared_with(project, models, tiny_mnist):
    """Synthetic activation vs the best real digit, both recomputed from the saved images."""
    from cnnlab.analysis.ascent import LayerProbe, max_over_inputs, relu, unit_activations

    root, paths = project
    run_stage("units", "run=neurons", *paths,
              *fast("neurons", experiment="tiny_cnn", steps=40, max_test=200))
    out = root / "reports" / "neurons"
    assert written(out) == {"fc1.png", "images.pt", "units.csv", "neurons.md", "claims.json"}
    assert count_tiles(out / "fc1.png", 28, 1, 3) == 8
    inputs = load_inputs(models / "tiny_cnn" / "model.ckpt", tiny_mnist, 200)
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


def test_classes_stage_few_ink_lowers_the_ink(project):
    root, paths = project
    result = run_stage("classes", *paths,
                       *fast("classes", experiment="tiny_cnn", max_test=200, **{"ascent.steps": 40}))
    out = root / "reports" / "classes"
    assert written(out) == {"classes.png", "images.pt", "classes.csv", "classes.md",
                            "claims.json"}
    assert count_tiles(out / "classes.png", 28, 1, 3) == 30  # 10 free, 10 few-ink, 10 means
    free, few = result.metrics["unconstrained"], result.metrics["few_ink"]
    assert few["ink_fraction"] < free["ink_fraction"]
    assert few["mean_intensity"] < free["mean_intensity"]
    claims = json.loads((out / "claims.json").read_text())
    assert len(claims) == 3 and claims[1]["holds"] is True
    assert claims[0]["holds"] == (free["min_confidence"] >= 0.99)
    rows = (out / "classes.csv").read_text().splitlines()
    assert len(rows) == 1 + 30


def test_hierarchy_stage_reuses_the_images_and_measures_growth(project):
    root, paths = project
    for name in ("filters", "neurons"):
        run_stage("units", f"run={name}", *paths,
                  *fast(name, experiment="tiny_cnn", steps=2, max_test=200))
    result = run_stage("hierarchy", *paths, *fast("hierarchy", experiment="tiny_cnn", digits=4))
    out = root / "reports" / "hierarchy"
    assert written(out) == {"hierarchy.png", "hierarchy.csv", "hierarchy.md", "claims.json"}
    metrics = result.metrics
    assert [metrics[k]["receptive_field"] for k in ("conv1", "conv2", "fc1")] == [3, 8, 28]
    spreads = [metrics[k]["gradient_spread"] for k in ("conv1", "conv2", "fc1")]
    claim = json.loads((out / "claims.json").read_text())[0]
    assert claim["holds"] == (spreads[0] < spreads[1] < spreads[2])


def test_invariance_stage_writes_one_shift_curve_per_network(project):
    root, paths = project
    result = run_stage("invariance", *paths, *fast("invariance", cnn="tiny_cnn", dense="tiny_dnn",
                                                   max_shift=2, max_test=200))
    out = root / "reports" / "invariance"
    assert written(out) == {"shift.png", "subsample.csv", "invariance.md", "claims.json"}
    assert written(root / "plots" / "invariance") == {"tiny_cnn.csv", "tiny_dnn.csv"}
    curve = (root / "plots" / "invariance" / "tiny_cnn.csv").read_text().splitlines()
    assert curve[0] == "shift,accuracy" and len(curve) == 1 + 3
    metrics = result.metrics
    assert float(curve[1].split(",")[1]) == pytest.approx(metrics["cnn"]["clean"])
    assert set(metrics["cnn"]["subsampled"]) == {"nearest", "bilinear"}
    claims = json.loads((out / "claims.json").read_text())
    assert claims[0]["holds"] == (metrics["cnn"]["mean_shift_drop"]
                                  < metrics["dense"]["mean_shift_drop"])


def test_a_stage_logs_its_config_numbers_and_figures_to_mlflow(project):
    _, paths = project
    result = run_stage("classes", *paths,
                       *fast("classes", experiment="tiny_cnn", max_test=100, **{"ascent.steps": 3}))
    client = MlflowClient()
    (run,) = client.search_runs([client.get_experiment_by_name("analysis").experiment_id])
    assert run.info.run_name == "classes" and run.info.status == "FINISHED"
    assert run.data.params["ascent.steps"] == "3"
    assert run.data.metrics["few_ink.ink_fraction"] == pytest.approx(
        result.metrics["few_ink"]["ink_fraction"])
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "classes")}
    assert {"classes/classes.png", "classes/claims.json"} <= logged


@pytest.mark.parametrize("content", [None, b"not a checkpoint"])
@pytest.mark.parametrize("script,run", [("units", "run=filters"), ("classes", None),
                                        ("invariance", None)])
def test_missing_or_corrupt_checkpoint_names_the_file_and_writes_nothing(project, content,
                                                                        script, run):
    root, paths = project
    path = root / "broken" / "model.ckpt"
    path.parent.mkdir()
    if content is not None:
        path.write_bytes(content)
    paths = [p for p in paths if not p.startswith("paths.models")] + [f"paths.models={root}"]
    names = {"units": ["analysis.filters.experiment=broken"],
             "classes": ["analysis.classes.experiment=broken"],
             "invariance": ["analysis.invariance.cnn=broken", "analysis.invariance.dense=broken"]}
    with pytest.raises(CheckpointError, match=str(path)):
        run_stage(script, *([run] if run else []), *paths, *names[script])
    assert not [p for d in ("reports", "metrics") for p in (root / d).rglob("*")]  # no temp left
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("analysis").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_hierarchy_without_the_filters_stage_names_the_missing_file(project):
    root, paths = project
    with pytest.raises(DataError, match=str(root / "reports" / "filters" / "images.pt")):
        run_stage("hierarchy", *paths, *fast("hierarchy", experiment="tiny_cnn"))


def test_stage_script_reports_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    code = run_script("units", "run=filters", f"paths.models={tmp_path}",
                      f"paths.reports={tmp_path / 'reports'}")
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1:] == [
        f"error: {tmp_path / 'mnist_cnn' / 'model.ckpt'}: checkpoint is missing "
        "(run the train stage first)"]
    assert "Traceback" not in err
    assert not list((tmp_path / "reports").rglob("*"))


def test_a_device_this_machine_lacks_is_a_config_error_before_any_output(project):
    root, paths = project
    device = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    with pytest.raises(ConfigError, match=r"analysis\.classes\.device"):
        run_stage("classes", *paths, *fast("classes", experiment="tiny_cnn", device=device))
    assert not [p for d in ("reports", "metrics") for p in (root / d).rglob("*")]


def test_device_cpu_gives_the_same_numbers_as_auto_on_this_machine(project):
    """On a machine without a GPU `auto` is the CPU: the same numbers, bit for bit."""
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("auto picks a GPU here")
    _, paths = project
    metrics = [run_stage("invariance", *paths,
                         *fast("invariance", cnn="tiny_cnn", dense="tiny_dnn", max_shift=1,
                               max_test=200, device=device)).metrics
               for device in ("cpu", "auto")]
    assert metrics[0] == metrics[1]
