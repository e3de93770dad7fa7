"""Text models: shapes, Kim's full-width filters, padding invariance, frozen static vectors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cnnlab.core.errors import ConfigError
from cnnlab.models import InputSpec, build_model, count_parameters
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.training.module import Classifier

V, D, L = 40, 12, 10


@pytest.fixture
def spec() -> InputSpec:
    vectors = torch.randn(V, D, generator=torch.Generator().manual_seed(0)) * 0.5
    vectors[0] = 0
    return InputSpec((L,), 2, {"embeddings": vectors})


def batch(n: int = 6, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, V, (n, L), generator=gen)
    lengths = torch.randint(1, L + 1, (n,), generator=gen)
    ids[torch.arange(L)[None, :] >= lengths[:, None]] = 0  # padded at the end
    return ids


@pytest.mark.parametrize("cfg", [
    {"name": "kim", "embedding": "rand", "filters": 7},
    {"name": "kim", "embedding": "static", "filters": 7, "windows": [2, 3]},
    {"name": "emb2d", "embedding": "nonstatic", "channels": 5, "width": 3, "stride": 1},
    {"name": "emb2d", "embedding": "nonstatic", "channels": 5, "width": 4, "stride": 4,
     "hidden": [9]},
    {"name": "bag", "embedding": "nonstatic"},
])
def test_output_shapes(cfg, spec):
    torch.manual_seed(0)
    model = build_model(cfg, spec).eval()
    assert model(batch()).shape == (6, 2)


def test_kim_filters_span_the_full_embedding_width(spec):
    model = build_model({"name": "kim", "embedding": "nonstatic", "filters": 7,
                         "windows": [3, 4, 5]}, spec)
    for conv, h in zip(model.convs, [3, 4, 5], strict=True):
        assert conv.weight.shape == (7, D, h)  # filters x every dimension x h words
    x = model.embedding(batch()).transpose(1, 2)
    assert model.convs[0](x).shape == (6, 7, L - 2)  # one value per time step: no embedding axis
    # conv weights: 7 * D * (3 + 4 + 5) + 3 * 7 biases; output 21 * 2 + 2
    expected = V * D + 7 * D * 12 + 21 + 21 * 2 + 2
    assert count_parameters(model) == expected


def test_emb2d_is_a_2d_convolution_over_time_and_embedding(spec):
    model = build_model({"name": "emb2d", "embedding": "nonstatic", "channels": 5, "width": 3,
                         "stride": 2, "windows": [2, 3]}, spec).eval()
    assert [tuple(c.weight.shape) for c in model.convs] == [(5, 3, 2), (5, 3, 3)]
    ids = torch.randint(2, V, (4, L), generator=torch.Generator().manual_seed(3))  # no padding
    image = model.embedding(ids).unsqueeze(1)  # N x 1 x L x D
    expected = []
    for conv in model.convs:  # the same weights as an (h x width) Conv2d kernel
        kernel = conv.weight.transpose(1, 2).unsqueeze(1)  # C x 1 x h x width
        maps = F.conv2d(image, kernel, conv.bias, stride=(1, 2)).relu()
        assert maps.shape[3] == (D - 3) // 2 + 1  # it slid along the embedding axis
        expected.append(maps.amax(dim=(2, 3)))
    assert torch.allclose(model.features(ids), torch.cat(expected, 1), atol=1e-5)
    assert count_parameters(model) == V * D + 5 * 3 * (2 + 3) + 10 + 10 * 2 + 2


def test_emb2d_sees_vector_dimension_order_kim_does_not(spec):
    """Permuting the embedding dimensions (and Kim's weights the same way) changes nothing for
    Kim: its filters hold one weight per dimension. For emb2d it changes the output."""
    torch.manual_seed(0)
    perm = torch.randperm(D)
    ids = batch()
    kim = build_model({"name": "kim", "embedding": "nonstatic", "filters": 4}, spec).eval()
    out = kim(ids)
    with torch.no_grad():
        kim.embedding.weight.copy_(kim.embedding.weight[:, perm])
        for conv in kim.convs:
            conv.weight.copy_(conv.weight[:, perm, :])
    assert torch.allclose(kim(ids), out, atol=1e-5)
    emb2d = build_model({"name": "emb2d", "embedding": "nonstatic", "channels": 4,
                         "width": 3}, spec).eval()
    out = emb2d(ids)
    with torch.no_grad():
        emb2d.embedding.weight.copy_(emb2d.embedding.weight[:, perm])
    assert not torch.allclose(emb2d(ids), out, atol=1e-3)


@pytest.mark.parametrize("name", ["kim", "emb2d", "bag"])
def test_padding_does_not_change_the_score(name, spec):
    torch.manual_seed(0)
    model = build_model({"name": name, "embedding": "nonstatic", "filters": 5, "channels": 4},
                        spec).eval()
    ids = batch(8)
    together = model(ids)
    alone = torch.cat([model(row[None, :max(int((row != 0).sum()), 5)]) for row in ids])
    assert torch.allclose(together, alone, atol=1e-5)


def _one_step(model: torch.nn.Module) -> None:
    module = Classifier(model, "adam", 0.1)
    opt = module.configure_optimizers()
    loss = F.cross_entropy(module(batch()), torch.tensor([0, 1, 0, 1, 0, 1]))
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_static_keeps_vectors_frozen_nonstatic_tunes_them(spec):
    torch.manual_seed(0)
    static = build_model({"name": "kim", "embedding": "static", "filters": 5}, spec)
    before = static.embedding.weight.detach().clone()
    conv_before = static.convs[0].weight.detach().clone()
    assert torch.equal(before, spec.extras["embeddings"])
    _one_step(static)
    assert torch.equal(static.embedding.weight, before)
    assert not torch.equal(static.convs[0].weight, conv_before)
    assert count_parameters(static, trainable_only=True) == count_parameters(static) - V * D

    nonstatic = build_model({"name": "kim", "embedding": "nonstatic", "filters": 5}, spec)
    _one_step(nonstatic)
    assert not torch.equal(nonstatic.embedding.weight, before)
    assert not nonstatic.embedding.weight[0].any()  # padding stays a zero vector


def test_rand_starts_from_scratch_at_the_vectors_scale(spec):
    torch.manual_seed(0)
    model = build_model({"name": "kim", "embedding": "rand"}, spec)
    weight = model.embedding.weight.detach()
    assert not torch.allclose(weight, spec.extras["embeddings"])
    assert not weight[0].any()
    assert weight[1:].std() == pytest.approx(float(spec.extras["embeddings"][1:].std()), rel=0.2)
    assert model.embedding.weight.requires_grad


@pytest.mark.parametrize("cfg, message", [
    ({"name": "kim", "embedding": "glove"}, "model.embedding"),
    ({"name": "kim", "windows": [3, 11]}, "model.windows"),
    ({"name": "kim", "filters": 0}, "model.filters"),
    ({"name": "emb2d", "width": 13}, "model.width"),
])
def test_bad_configs(cfg, message, spec):
    with pytest.raises(ConfigError, match=message):
        build_model(cfg, spec)


def test_needs_token_ids_and_vectors(spec):
    with pytest.raises(ConfigError, match="input_shape"):
        build_model({"name": "kim"}, InputSpec((1, 28, 28), 10, spec.extras))
    with pytest.raises(ConfigError, match="embeddings"):
        build_model({"name": "bag"}, InputSpec((L,), 2, {}))


def test_checkpoint_round_trip(tmp_path: Path, spec):
    torch.manual_seed(0)
    cfg = {"name": "kim", "embedding": "static", "filters": 5}
    model = build_model(cfg, spec).eval()
    save_checkpoint(tmp_path / "m.ckpt", model, cfg, spec, ["neg", "pos"], "text_test")
    loaded, meta = load_checkpoint(tmp_path / "m.ckpt")
    ids = batch()
    assert torch.equal(loaded(ids), model(ids)) and meta["classes"] == ["neg", "pos"]
