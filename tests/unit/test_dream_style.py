"""Deep Dream, style transfer and the image backbone: the optimisations do what they claim."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from cnnlab.analysis import backbone as bb
from cnnlab.analysis.dream import DreamSettings, deep_dream, dream_and_measure, run_deepdream, truncate
from cnnlab.analysis.style import StyleObjective, StyleSettings, gram_matrix, run_style, transfer_style
from cnnlab.core.errors import CheckpointError, ConfigError, DataError
from cnnlab.core.threads import torch_threads
from cnnlab.data.prepared import Split, write_prepared
from cnnlab.models import InputSpec, build_model
from cnnlab.training.checkpoint import save_checkpoint

TINY_CNN = {"name": "convnet", "conv": [{"channels": 4, "kernel": 3}, {"channels": 6, "kernel": 3}],
            "stride": 1, "padding": 0, "downsample": "max", "pool": 2, "head": "flatten",
            "hidden": [8], "dropout": 0.0}
TINY_BACKBONE = {"kind": "random", "seed": 0, "channels": [4, 6], "kernels": [3, 5], "pool": "avg"}


@pytest.fixture(autouse=True)
def one_thread():
    """Small convolutions on a shared CPU: one thread avoids waiting on busy cores."""
    with torch_threads(1):
        yield


def tiny_cnn(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(TINY_CNN, InputSpec((1, 28, 28), 10)).eval()


def digits(n: int = 3) -> torch.Tensor:
    """Blurry strokes in [0, 1], like MNIST digits."""
    gen = torch.Generator().manual_seed(1)
    x = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        r = int(torch.randint(6, 20, (1,), generator=gen))
        x[i, 0, r:r + 3, 5:23] = 1.0
        x[i, 0, 5:23, r:r + 2] = 0.8
    return x


# --- Deep Dream -------------------------------------------------------------------------

def test_deep_dream_raises_the_layers_activation_more_than_noise_does():
    layer = truncate(tiny_cnn(), "relu2")
    settings = DreamSettings(octaves=2, octave_scale=1.4, steps=8, step_size=0.05, jitter=1)
    dreamt, stats = dream_and_measure(layer, digits(), settings, seed=0)
    assert stats["norm_after"] > stats["norm_before"]
    assert stats["min_image_ratio"] > 1.0  # every image, not just on average
    assert stats["ratio"] > stats["control_ratio"]
    assert dreamt.shape == digits().shape
    assert float(dreamt.min()) >= 0.0 and float(dreamt.max()) <= 1.0


def test_deep_dream_is_deterministic_for_a_seed_and_jitter_depends_on_it():
    layer = truncate(tiny_cnn(), "relu1")
    settings = DreamSettings(octaves=1, octave_scale=1.4, steps=4, step_size=0.05, jitter=2)
    a = deep_dream(layer, digits(2), settings, seed=3)
    b = deep_dream(layer, digits(2), settings, seed=3)
    c = deep_dream(layer, digits(2), settings, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_deep_dream_through_the_backbone_amplifies_a_photo_layer():
    net = bb.build_backbone(TINY_BACKBONE)
    photo = bb.bundled_image("chelsea", 32)[None]
    _, stats = dream_and_measure(lambda x: net.features(x, ["relu2"])["relu2"], photo,
                                 DreamSettings(octaves=2, octave_scale=1.4, steps=4, step_size=0.02,
                                               jitter=2))
    assert stats["ratio"] > 1.05


def test_unknown_layer_and_too_many_octaves_are_config_errors():
    with pytest.raises(ConfigError, match="relu9"):
        truncate(tiny_cnn(), "relu9")
    shrink = DreamSettings(octaves=6, octave_scale=2.0, steps=1, step_size=0.02, jitter=0)
    with pytest.raises(ConfigError, match="too small"):
        deep_dream(truncate(tiny_cnn(), "relu2"), digits(1), shrink)
    with pytest.raises(ConfigError, match="digits"):
        DreamSettings.from_cfg({"octaves": 1, "octave_scale": 1.4, "steps": 0, "step_size": 0.1,
                                "jitter": 0}, "digits")


# --- style transfer ---------------------------------------------------------------------

def test_gram_matrix_of_a_known_tensor():
    feats = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # N=1, C=2, H=1, W=2
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4  # F F^T / (C*H*W)
    assert torch.allclose(gram_matrix(feats), expected)
    # positions do not matter to a Gram matrix: shuffling them leaves it unchanged
    x = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(1))
    shuffled = x.flatten(2)[:, :, perm].reshape(2, 3, 4, 5)
    assert torch.allclose(gram_matrix(x), gram_matrix(shuffled), atol=1e-6)
    assert gram_matrix(x).shape == (2, 3, 3)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_style_transfer_lowers_the_style_loss(optimizer):
    net = bb.build_backbone(TINY_BACKBONE)
    content = bb.bundled_image("chelsea", 32)[None]
    style = bb.bundled_image("brick", 32)[None]
    settings = StyleSettings("relu2", ("input", "relu1", "relu2"), 1.0, 1.0, steps=15, lr=0.05,
                             optimizer=optimizer, init="content")
    objective = StyleObjective(net, content, style, settings)
    before = objective.measure(content)
    result, history = transfer_style(objective, content)
    after = objective.measure(result)
    assert after["style"] < 0.5 * before["style"]
    assert after["content"] < objective.measure(style)["content"]  # still closer to the content
    assert history and float(result.min()) >= 0.0 and float(result.max()) <= 1.0


def test_style_settings_reject_unknown_choices():
    base = {"content_layer": "relu1", "style_layers": ["relu1"], "content_weight": 1.0,
            "style_weight": 1.0, "steps": 1, "lr": 0.1, "optimizer": "adam", "init": "content"}
    with pytest.raises(ConfigError, match="optimizer"):
        StyleSettings.from_cfg({**base, "optimizer": "sgd"})
    with pytest.raises(ConfigError, match="content_layer"):
        StyleSettings.from_cfg({k: v for k, v in base.items() if k != "content_layer"})
    net = bb.build_backbone(TINY_BACKBONE)
    image = torch.rand(1, 3, 16, 16)
    with pytest.raises(ConfigError, match="relu7"):
        StyleObjective(net, image, image, StyleSettings.from_cfg({**base, "style_layers": ["relu7"]}))


# --- backbone and images ----------------------------------------------------------------

def test_random_backbone_is_seeded():
    a, b = bb.random_backbone((4,), (3,), seed=1), bb.random_backbone((4,), (3,), seed=1)
    c = bb.random_backbone((4,), (3,), seed=2)
    wa, wb, wc = (m.body.conv1.branches[0].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    feats = a.features(torch.rand(1, 3, 16, 16), ["relu1", "pool1"])
    assert feats["relu1"].shape == (1, 4, 16, 16) and feats["pool1"].shape == (1, 4, 8, 8)


def test_vgg19_weights_missing_or_corrupt_name_the_file(tmp_path):
    missing = tmp_path / "vgg19.pth"
    with pytest.raises(CheckpointError, match="vgg19.pth"):
        bb.build_backbone({"kind": "vgg19", "weights": str(missing)})
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        bb.vgg19_backbone(corrupt)
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(CheckpointError, match="wrong.pth.*missing"):
        bb.vgg19_backbone(wrong)
    with pytest.raises(ConfigError, match="weights"):
        bb.build_backbone({"kind": "vgg19", "weights": None})


def _vgg19_state(prefix: str = "") -> dict[str, torch.Tensor]:
    """A torchvision-layout VGG19 `features` state_dict (zeros except the first conv)."""
    state, c_in, index = {}, 3, 0
    for item in bb.VGG19_LAYOUT:
        if item == "M":
            index += 1
            continue
        state[f"{prefix}{index}.weight"] = torch.zeros(item, c_in, 3, 3)
        state[f"{prefix}{index}.bias"] = torch.zeros(item)
        c_in, index = item, index + 2
    gen = torch.Generator().manual_seed(0)
    state[f"{prefix}0.weight"] = torch.randn(64, 3, 3, 3, generator=gen)
    state[f"{prefix}0.bias"] = torch.randn(64, generator=gen)
    return state


def test_vgg19_backbone_loads_torchvision_layout(tmp_path):
    state = _vgg19_state("features.")
    path = tmp_path / "vgg19_full.pth"
    torch.save({**state, "classifier.0.weight": torch.zeros(1)}, path)
    net = bb.vgg19_backbone(path)
    x = torch.rand(1, 3, 32, 32)
    expected = torch.relu(torch.nn.functional.conv2d(
        (x - net.mean) / net.std, state["features.0.weight"], state["features.0.bias"], padding=1))
    feats = net.features(x, ["relu1_1", "pool5"])
    assert torch.allclose(feats["relu1_1"], expected, atol=1e-5)
    assert feats["pool5"].shape == (1, 512, 1, 1)
    state = _vgg19_state()
    state["2.weight"] = torch.zeros(64, 32, 3, 3)  # conv1_2 of the wrong shape
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="vgg19_full.pth.*do not fit"):
        bb.vgg19_backbone(path)


def test_bundled_image_grey_to_rgb_and_offline_errors(monkeypatch):
    brick = bb.bundled_image("brick", 24)
    assert brick.shape == (3, 24, 24)
    assert torch.equal(brick[0], brick[1]) and 0.0 <= float(brick.min()) <= float(brick.max()) <= 1.0
    assert bb.bundled_image("chelsea", 20).shape == (3, 20, 20)  # 300 x 451, centre-cropped
    with pytest.raises(DataError, match="no_such_picture"):
        bb.bundled_image("no_such_picture", 24)

    import skimage.data

    def fetch_on_demand():
        raise ModuleNotFoundError("pooch is needed to download this image")

    monkeypatch.setattr(skimage.data, "eagle", fetch_on_demand, raising=False)
    with pytest.raises(DataError, match="eagle.*not bundled"):
        bb.bundled_image("eagle", 24)


# --- the stages' library entry points ---------------------------------------------------

@pytest.fixture
def tiny_run(tmp_path) -> tuple[Path, Path]:
    """A checkpoint of a tiny random CNN and a prepared dataset of random 28x28 digits."""
    model = tiny_cnn()
    ckpt = tmp_path / "models" / "tiny" / "model.ckpt"
    ckpt.parent.mkdir(parents=True)
    save_checkpoint(ckpt, model, TINY_CNN, InputSpec((1, 28, 28), 10), [str(i) for i in range(10)],
                    "tiny")
    x = (digits(4) * 255).to(torch.uint8)
    split = Split(x, torch.arange(4) % 10)
    data = tmp_path / "prepared"
    data.mkdir()
    write_prepared(data, {"train": split, "val": split, "test": split},
                   {"classes": [str(i) for i in range(10)], "input_shape": [1, 28, 28]})
    return ckpt, data


DREAM_CFG = {"seed": 0, "min_ratio": 1.01, "threads": 1, "device": "auto",
             "digits": {"count": 3, "layer": "relu2", "octaves": 2, "octave_scale": 1.4, "steps": 4,
                        "step_size": 0.05, "jitter": 1},
             "photo": {"image": "coffee", "size": 32, "layer": "relu2", "octaves": 2,
                       "octave_scale": 1.4, "steps": 3, "step_size": 0.02, "jitter": 2},
             "backbone": TINY_BACKBONE}


def test_run_deepdream_writes_figures_numbers_and_claims(tiny_run, tmp_path):
    ckpt, data = tiny_run
    out = tmp_path / "reports" / "deepdream"
    out.mkdir(parents=True)
    result, claims = run_deepdream(DREAM_CFG, ckpt, data, out)
    assert {p.name for p in out.iterdir()} == {"digits.png", "photo.png", "dream.md"}
    assert (out / "digits.png").read_bytes()[:4] == b"\x89PNG"
    claims = [asdict(c) for c in claims]
    assert [c["claim"] for c in claims] == ["Deep Dream amplifies what a layer detects"] * 2
    assert claims[0]["value"] == pytest.approx(result["digits"]["ratio"])
    assert claims[0]["holds"] == (result["digits"]["ratio"] >= 1.01
                                  and result["digits"]["ratio"] > result["digits"]["control_ratio"])
    assert result["digits"]["ratio"] > 1.0 and result["photo"]["ratio"] > 1.0


def test_run_deepdream_bad_checkpoint_names_it_and_writes_nothing(tiny_run, tmp_path):
    _, data = tiny_run
    out = tmp_path / "deepdream"
    out.mkdir()
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="broken.ckpt"):
        run_deepdream(DREAM_CFG, bad, data, out)
    assert not list(out.iterdir())


def test_run_style_writes_images_and_a_claim(tmp_path):
    cfg = {"seed": 0, "content": "chelsea", "style": "brick", "size": 32, "threads": 1,
           "device": "auto",
           "content_layer": "relu2", "style_layers": ["input", "relu1", "relu2"],
           "content_weight": 1.0, "style_weight": 1.0, "optimizer": "adam", "lr": 0.05,
           "steps": 10, "init": "content", "min_style_drop": 2.0, "max_content_fraction": 1.0,
           "backbone": TINY_BACKBONE}
    out = tmp_path / "style"
    out.mkdir()
    numbers, (claim,) = run_style(cfg, out, tmp_path / "losses.csv")
    assert numbers["style_loss_after"] < numbers["style_loss_before"]
    assert {p.name for p in (out / "images").iterdir()} == {"content.png", "style.png", "result.png"}
    assert (out / "transfer.png").is_file() and (out / "losses.png").is_file()
    assert len((tmp_path / "losses.csv").read_text().splitlines()) == 1 + numbers["evaluations"]
    assert claim.value == pytest.approx(numbers["style_drop"])
    assert claim.holds == (numbers["style_drop"] >= 2.0 and numbers["content_fraction"] <= 1.0)
