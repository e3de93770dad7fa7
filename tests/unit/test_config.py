"""conf/ is the one source of truth: params.yaml must be exactly its composition."""

import copy

import pytest
import torch
import yaml

from cnnlab.models import InputSpec, build_model
from tests.conftest import ROOT, compose_config

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
