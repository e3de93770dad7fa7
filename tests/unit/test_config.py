"""conf/ is the one source of truth: params.yaml must be exactly its composition."""

import copy

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from cnnlab.models import InputSpec, build_model
from tests.conftest import ROOT, compose_conf, compose_config

EXPERIMENTS = list(compose_config()["train"])


@pytest.fixture(scope="module")
def composed() -> dict:
    """conf/ composed once for the parametrized tests below (each ~0.5 s otherwise)."""
    return compose_config()


def test_params_yaml_is_the_composition_of_conf():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params == compose_config(), "params.yaml is stale: run `make params` and commit it"


def test_every_dvc_stage_reads_params_that_exist():
    params = compose_config()
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        foreach = stage.get("foreach", [""])  # `${train}`, or a literal dict or list of items
        if isinstance(foreach, str):
            foreach = params[foreach.removeprefix("${").removesuffix("}")]
        keys = [k.replace("${key}", str(item)) for item in foreach for k in body.get("params", [])
                if isinstance(k, str)]
        for key in keys:
            node = params
            for part in key.split("."):
                assert part in node, f"stage {name} declares param {key}, absent from conf/"
                node = node[part]


def example_spec(cfg: dict, dataset: str) -> tuple[InputSpec, torch.Tensor]:
    """The InputSpec a prepared `dataset` gives its models, and a batch of 2 fake inputs."""
    gen = torch.Generator().manual_seed(0)
    audio, text = cfg["data"]["audio"], cfg["data"]["text"]
    if dataset == "mnist":
        return InputSpec((1, 28, 28), 10), torch.rand(2, 1, 28, 28, generator=gen)
    if dataset == audio["dataset"]:  # a spectrogram image: frequency bands x frames
        feats = audio["features"]
        bands = feats["n_mels"] if feats["kind"] == "mel" else feats["n_fft"] // 2 + 1
        shape = (1, bands, feats["frames"])
        return InputSpec(shape, len(audio["classes"])), torch.randn(2, *shape, generator=gen)
    if dataset == "text":  # token ids (0 = padding) and the GloVe 50d vectors of a small vocabulary
        vocab, length = 30, text["max_len"]
        vectors = torch.randn(vocab, 50, generator=gen)
        vectors[0] = 0
        ids = torch.randint(2, vocab, (2, length), generator=gen)
        ids[1, length // 2:] = 0
        return InputSpec((length,), len(text["labels"]), {"embeddings": vectors}), ids
    raise AssertionError(f"no input shape known for dataset {dataset!r}: add it to example_spec")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_builds_its_model_for_its_dataset(name, composed):
    """Each train entry names a dataset and a model that builds (geometry checked up front) and
    maps a batch of 2 of that dataset's inputs to 2 x n_classes scores."""
    cfg = copy.deepcopy(composed)
    exp = cfg["train"][name]
    assert {"dataset", "model", "trainer", "seed"} <= set(exp), name
    spec, batch = example_spec(cfg, exp["dataset"])
    torch.manual_seed(0)
    model = build_model(exp["model"], spec).eval()
    with torch.no_grad():
        assert model(batch).shape == (2, spec.num_classes)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_has_a_description(name, composed):
    description = composed["train"][name].get("description")
    assert isinstance(description, str) and description.strip(), f"conf/experiment/{name}.yaml"


def test_overrides_reach_one_experiment_only():
    cfg = compose_config(["train.mnist_cnn.model.conv.0.channels=32"])
    assert cfg["train"]["mnist_cnn"]["model"]["conv"][0]["channels"] == 32
    assert cfg["train"]["mnist_separable"]["model"]["conv"][0]["channels"] == 25


@pytest.mark.parametrize("overrides", [
    ["run=filters", "paths.models=/tmp/m", "analysis.filters.steps=2", "progress=true",
     "train.mnist_cnn.trainer.max_epochs=many", "+train.mnist_cnn.trainer.bogus=1",
     "~train.mnist_cnn.seed", "train.mnist_cnn.model.conv=[{channels:4,kernel:9}]",
     "data.text.labels=[negative,positive]", "data.mnist.idx_dir=null"],
    pytest.param(["experiment@train.mnist_cnn=mnist_separable", "train.mnist_cnn.trainer.lr=0.5"],
                 marks=pytest.mark.integration),  # composes conf/ twice more: seconds
])
def test_the_tests_compose_stage_configs_exactly_as_hydra_does(overrides):
    """The tests compose conf/'s groups once and apply the value overrides themselves, with
    Hydra's own function (conftest.compose_conf): the result must be what `compose` gives."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        expected = compose("config", overrides=overrides)
    composed = compose_conf(*overrides)
    assert OmegaConf.to_yaml(composed) == OmegaConf.to_yaml(expected)
    assert OmegaConf.is_struct(composed) and OmegaConf.is_struct(expected)


def test_the_tests_compose_a_bad_override_as_hydra_does():
    with pytest.raises(ConfigCompositionException, match="use \\+train.mnist_cnn.colour=red"):
        compose_conf("train.mnist_cnn.colour=red")
