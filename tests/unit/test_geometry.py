import pytest
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.models import InputSpec, build_model, count_parameters
from cnnlab.models.geometry import output_size, plan_convnet, receptive_fields
from tests.conftest import compose_config

MNIST = InputSpec((1, 28, 28), 10)


def mnist_model_cfg(name: str) -> dict:
    return compose_config()["train"][name]["model"]


@pytest.mark.parametrize(("o", "f", "p", "s", "expected"),
                         [(28, 3, 0, 1, 26), (26, 2, 0, 2, 13), (13, 3, 1, 1, 13), (7, 3, 0, 2, 3),
                          (5, 5, 0, 1, 1)])
def test_output_size_is_the_lecture_formula(o, f, p, s, expected):
    assert output_size(o, f, p, s) == expected


def test_lecture_cnn_matches_the_lecture_counts():
    model = build_model(mnist_model_cfg("mnist_cnn"), MNIST)
    per_layer = {p.name: p.params for p in model.plan if p.params}
    assert per_layer == {"conv1": 250, "conv2": 11_300, "fc1": 125_100, "out": 1_010}
    assert count_parameters(model) == 137_660
    assert [p.out_shape for p in model.plan if p.name in ("conv1", "pool1", "conv2", "pool2")] == [
        (25, 26, 26), (25, 13, 13), (50, 11, 11), (50, 5, 5)]
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_separable_conv_has_cin_k_k_plus_cin_cout_weights():
    model = build_model(mnist_model_cfg("mnist_separable"), MNIST)
    conv2 = model.conv2
    assert conv2.depthwise.weight.numel() == 25 * 3 * 3
    assert conv2.pointwise.weight.numel() == 25 * 50
    assert sum(p.numel() for p in conv2.parameters()) == 25 * 9 + 25 * 50 + 50


@pytest.mark.parametrize("name", ["mnist_dnn", "mnist_cnn", "mnist_separable"])
def test_built_models_have_the_planned_parameter_count(name):
    model = build_model(mnist_model_cfg(name), MNIST)
    assert count_parameters(model) == sum(p.params for p in model.plan)


def test_dense_baseline_counts():
    model = build_model(mnist_model_cfg("mnist_dnn"), MNIST)
    assert count_parameters(model) == 784 * 500 + 500 + 500 * 500 + 500 + 500 * 10 + 10


@pytest.mark.parametrize(("change", "shape"), [
    ({"downsample": "avg"}, (50, 5, 5)),
    ({"downsample": "stride"}, (50, 6, 6)),  # conv stride 2: 28->13, 13->6
    ({"downsample": "none"}, (50, 24, 24)),
    ({"padding": 1}, (50, 7, 7)),
])
def test_geometry_variants_predict_the_built_shapes(change, shape):
    cfg = {**mnist_model_cfg("mnist_cnn"), **change}
    model = build_model(cfg, MNIST)
    last_conv_stage = [p for p in model.plan if p.name.startswith(("conv", "pool"))][-1]
    assert last_conv_stage.out_shape == shape
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_global_pooling_head_drops_the_flatten_width():
    cfg = {**mnist_model_cfg("mnist_cnn"), "head": "global_avg"}
    model = build_model(cfg, MNIST)
    assert model.fc1.in_features == 50
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_rectangular_kernels_slide_along_one_axis():
    cfg = {"name": "convnet", "conv": [{"channels": 4, "kernel": [5, 1], "pool": [2, 1]}],
           "head": "global_max", "hidden": []}
    model = build_model(cfg, InputSpec((1, 40, 30), 10))
    assert model.plan[0].out_shape == (4, 36, 30)
    assert model.plan[1].out_shape == (4, 18, 30)


def test_impossible_geometry_is_a_config_error_naming_the_layer():
    cfg = {**mnist_model_cfg("mnist_cnn"),
           "conv": [{"channels": 8, "kernel": 3}] * 4}  # 28->26->13->11->5->3->1->(-1)
    with pytest.raises(ConfigError, match=r"model.conv\[3\].*\(O - F \+ 2P\)/S \+ 1"):
        build_model(cfg, MNIST)


@pytest.mark.parametrize(("change", "message"), [
    ({"downsample": "median"}, "model.downsample"),
    ({"head": "attention"}, "model.head"),
    ({"conv": [{"channels": 0, "kernel": 3}]}, "channels"),
    ({"conv": [{"channels": 4, "kernel": [3, 3, 3]}]}, "kernel"),
    ({"name": "resnet"}, "model.name"),
])
def test_bad_model_configs_are_named(change, message):
    with pytest.raises(ConfigError, match=message):
        build_model({**mnist_model_cfg("mnist_cnn"), **change}, MNIST)


def test_receptive_field_grows_with_depth():
    plan = plan_convnet(mnist_model_cfg("mnist_cnn"), (1, 28, 28), 10)
    assert receptive_fields(plan) == {"conv1": 3, "pool1": 4, "conv2": 8, "pool2": 10}
