"""conf/ is the one source of truth: params.yaml must be exactly its composition."""

import yaml

from cnnlab.models import InputSpec, build_model
from tests.conftest import ROOT, compose_config


def test_params_yaml_is_the_composition_of_conf():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params == compose_config(), "params.yaml is stale: run `make params` and commit it"


def test_every_dvc_stage_reads_params_that_exist():
    params = compose_config()
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        keys = [k.replace("${key}", next(iter(params["train"]))) for k in body.get("params", [])
                if isinstance(k, str)]
        for key in keys:
            node = params
            for part in key.split("."):
                assert part in node, f"stage {name} declares param {key}, absent from conf/"
                node = node[part]


def test_every_experiment_builds_on_its_dataset_shape():
    """Each train entry names a dataset and a buildable model (geometry checked up front)."""
    shapes = {"mnist": InputSpec((1, 28, 28), 10)}
    for name, exp in compose_config()["train"].items():
        assert {"dataset", "model", "trainer", "seed"} <= set(exp), name
        if exp["dataset"] in shapes:
            build_model(exp["model"], shapes[exp["dataset"]])


def test_overrides_reach_one_experiment_only():
    cfg = compose_config(["train.mnist_cnn.model.conv.0.channels=32"])
    assert cfg["train"]["mnist_cnn"]["model"]["conv"][0]["channels"] == 32
    assert cfg["train"]["mnist_separable"]["model"]["conv"][0]["channels"] == 25
