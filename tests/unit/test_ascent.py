"""Gradient ascent on the input: it raises its objective, keeps images valid, and its terms work."""

import pytest
import torch

from cnnlab.analysis.ascent import (
    AscentSettings,
    Blur,
    Jitter,
    L1Ink,
    LayerProbe,
    TotalVariation,
    ascend,
    build_terms,
    gaussian_blur,
    layer_output_shape,
    leaky,
    max_over_inputs,
    relu,
    shift,
    start_images,
    unit_activations,
    unit_objective,
)
from cnnlab.analysis.classes import ink_fraction, pearson
from cnnlab.analysis.grids import tile_grid
from cnnlab.analysis.hierarchy import formula_fields, gradient_map, spread
from cnnlab.analysis.invariance import subsample_restore
from cnnlab.core.errors import ConfigError
from cnnlab.models import InputSpec, build_model

SHAPE = (1, 28, 28)
TINY_CNN = {"name": "convnet", "conv": [{"channels": 4, "kernel": 3}, {"channels": 6, "kernel": 3}],
            "downsample": "max", "pool": 2, "head": "flatten", "hidden": [8]}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions on a shared 2-core machine run fastest on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(TINY_CNN, InputSpec(SHAPE, 10)).eval()


@pytest.mark.parametrize("layer", ["conv1", "conv2", "fc1", "out"])
def test_ascent_raises_every_units_objective(model, layer):
    n = layer_output_shape(model, layer, SHAPE)[0]
    objective = unit_objective(range(n))
    result = ascend(model, layer, objective, n, SHAPE, AscentSettings(steps=20, lr=0.05))
    assert result.images.shape == (n, *SHAPE)
    assert torch.all(result.objective_end > result.objective_start + 1e-3)
    assert result.trace[-1] > result.trace[0]


def test_leaky_surrogate_wakes_units_silent_on_the_start_image(model):
    """A unit whose ReLU map is all zero has no ReLU gradient; the leaky slope moves it."""
    settings = AscentSettings(steps=30, lr=0.05, init_mean=0.01, init_std=0.0)
    n = layer_output_shape(model, "conv2", SHAPE)[0]
    plain = ascend(model, "conv2", unit_objective(range(n), relu), n, SHAPE, settings)
    silent = plain.objective_start == 0
    assert silent.any(), "the test needs a unit silent on the near-black start image"
    assert torch.equal(plain.objective_end[silent], plain.objective_start[silent])
    woken = ascend(model, "conv2", unit_objective(range(n), leaky(0.01)), n, SHAPE, settings,
                   measure=unit_objective(range(n), relu))
    assert torch.all(woken.objective_end[silent] > 0)


@pytest.mark.parametrize("parametrisation", ["clamp", "sigmoid"])
def test_images_stay_in_the_unit_range(model, parametrisation):
    settings = AscentSettings(steps=30, lr=0.5, parametrisation=parametrisation)
    result = ascend(model, "out", unit_objective(range(10)), 10, SHAPE, settings,
                    [Jitter(2), Blur(0.5, 5)])
    assert result.images.min() >= 0.0 and result.images.max() <= 1.0
    assert torch.all(result.objective_end > result.objective_start)


def test_one_batch_gives_the_images_of_one_unit_at_a_time(model):
    settings = AscentSettings(steps=3, lr=0.01, parametrisation="sigmoid")
    start = start_images(6, SHAPE, settings)
    batched = ascend(model, "conv2", unit_objective(range(6)), 6, SHAPE, settings, start=start)
    for k in (0, 5):
        alone = ascend(model, "conv2", unit_objective([k]), 1, SHAPE, settings,
                       start=start[k:k + 1])
        torch.testing.assert_close(alone.images[0], batched.images[k], atol=1e-4, rtol=0)


def test_ascent_leaves_the_weights_and_mode_alone(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    ascend(model, "out", unit_objective(range(10)), 10, SHAPE, AscentSettings(steps=5))
    assert model.training
    model.eval()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.is_contiguous() for p in model.parameters())  # channels-last undone


def test_result_images_are_plain_contiguous_tensors(model):
    result = ascend(model, "conv1", unit_objective(range(4)), 4, SHAPE, AscentSettings(steps=2))
    assert result.images.is_contiguous() and result.images.shape == (4, *SHAPE)


def test_l1_penalty_lowers_the_ink(model):
    settings = AscentSettings(steps=40, lr=0.05)
    free = ascend(model, "out", unit_objective(range(10)), 10, SHAPE, settings)
    few = ascend(model, "out", unit_objective(range(10)), 10, SHAPE, settings, [L1Ink(0.05)])
    assert ink_fraction(few.images).mean() < ink_fraction(free.images).mean()
    assert few.images.mean() < free.images.mean()
    assert torch.all(few.penalty_end > 0) and torch.all(free.penalty_end == 0)


def test_probe_stops_the_forward_pass_at_its_layer(model):
    calls = []
    handle = model.out.register_forward_hook(lambda *args: calls.append(1))
    try:
        with LayerProbe(model, "conv1") as probe:
            acts = probe(torch.zeros(2, *SHAPE))
    finally:
        handle.remove()
    assert acts.shape == (2, 4, 26, 26) and calls == []
    assert not model.conv1._forward_hooks  # the probe removed its hook


def test_unknown_layer_is_a_config_error_naming_it(model):
    with pytest.raises(ConfigError, match="'conv9'"):
        ascend(model, "conv9", unit_objective([0]), 1, SHAPE, AscentSettings(steps=1))


def test_max_over_inputs_matches_brute_force(model):
    x = torch.rand(37, *SHAPE, generator=torch.Generator().manual_seed(1))
    best, idx = max_over_inputs(model, "conv2", x, relu, batch_size=10)
    with LayerProbe(model, "conv2") as probe, torch.no_grad():
        every = unit_activations(probe(x), relu)
    torch.testing.assert_close(best, every.max(dim=0).values)
    assert torch.equal(idx, every.argmax(dim=0))


def test_terms_penalise_what_they_say():
    flat = torch.full((1, 1, 8, 8), 0.25)
    checker = (torch.arange(64).view(1, 1, 8, 8) + torch.arange(8).view(1, 1, 8, 1)) % 2
    assert float(TotalVariation(1.0).penalty(flat)) == 0.0
    assert float(TotalVariation(1.0).penalty(checker.float())) == 2 * 8 * 7
    assert float(L1Ink(2.0).penalty(flat)) == pytest.approx(2.0 * 0.25 * 64)
    blurred = gaussian_blur(checker.float(), 1.0)
    assert TotalVariation(1.0).penalty(blurred) < TotalVariation(1.0).penalty(checker.float())
    assert blurred.mean().item() == pytest.approx(checker.float().mean().item(), abs=0.02)


def test_shift_moves_content_and_fills_black():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    moved = shift(x, 1, -2)
    assert torch.equal(moved[0, 0, 1:, :2], x[0, 0, :3, 2:])
    assert moved[0, 0, 0].abs().sum() == 0 and moved[0, 0, :, 2:].abs().sum() == 0
    assert shift(x, 4, 0).abs().sum() == 0


def test_build_terms_reads_the_config_and_rejects_negatives():
    terms = build_terms({"l1": 0.1, "tv": 0, "jitter": 2, "blur_sigma": 0.5, "blur_every": 4})
    assert [type(t) for t in terms] == [L1Ink, Jitter, Blur]
    with pytest.raises(ConfigError, match="analysis.classes.l1"):
        build_terms({"l1": -1}, "analysis.classes")
    with pytest.raises(ConfigError, match="parametrisation"):
        AscentSettings.from_cfg({"parametrisation": "tanh"})


def test_tile_grid_places_one_tile_per_image():
    images = torch.rand(7, 1, 5, 4)
    grid = tile_grid(images, ncols=3, pad=1, scale=2)
    assert grid.shape == (2 * (3 * 6 + 1), 2 * (3 * 5 + 1), 3)
    tile = tile_grid(images[4:5], ncols=1, pad=0, normalise=True)
    assert (grid[2 * 7:2 * 12:2, 2 * 6:2 * 10:2] == tile).all()  # image 4: row 1, column 1


def test_measures_of_images():
    a = torch.tensor([[0.0, 0.6, 1.0, 0.2]])
    assert float(ink_fraction(a)) == 0.5
    assert float(pearson(a, 2 * a + 1)) == pytest.approx(1.0)
    assert float(pearson(a, torch.ones_like(a))) == 0.0


def test_gradient_extent_grows_with_the_receptive_field(model):
    fields = formula_fields(model, ["conv1", "conv2", "fc1"], SHAPE)
    assert fields == {"conv1": 3, "conv2": 8, "fc1": 28}
    x = torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(0))
    areas = [spread(gradient_map(model, layer, x))[1] for layer in fields]
    assert areas[0] <= 9 and areas[1] <= 64 and areas[0] < areas[1] < areas[2]
    delta = torch.zeros(5, 5)
    delta[2, 3] = 1.0
    assert spread(delta) == (0.0, 1)


def test_subsample_restore_keeps_the_size_and_the_mean():
    x = torch.rand(2, 1, 28, 28)
    for mode in ("nearest", "bilinear"):
        y = subsample_restore(x, 2, mode)
        assert y.shape == x.shape
        assert y.mean().item() == pytest.approx(x.mean().item(), abs=0.02)
    with pytest.raises(ConfigError, match="restore"):
        subsample_restore(x, 2, "bicubic")
