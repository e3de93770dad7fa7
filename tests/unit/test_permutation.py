"""The embedding dimensions have no order: Kim's CNN is exactly invariant to one permutation of
them (in the vectors and its input weights); the 2-D kernels are not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnlab.analysis.permutation import permutation_check, permute_dimensions
from cnnlab.core.errors import ConfigError
from cnnlab.models import InputSpec, build_model
from cnnlab.training.checkpoint import save_checkpoint

V, D, L, N = 60, 20, 12, 64
KIM = {"name": "kim", "embedding": "nonstatic", "filters": 8, "windows": [2, 3]}
EMB2D = {"name": "emb2d", "embedding": "nonstatic", "channels": 6, "width": 4, "stride": 4,
         "windows": [2, 3], "hidden": [8]}
BAG = {"name": "bag", "embedding": "nonstatic"}


@pytest.fixture
def spec() -> InputSpec:
    vectors = torch.randn(V, D, generator=torch.Generator().manual_seed(0))
    vectors[0] = 0
    return InputSpec((L,), 2, {"embeddings": vectors})


def texts(seed: int = 1) -> torch.Tensor:
    ids = torch.randint(2, V, (N, L), generator=torch.Generator().manual_seed(seed))
    ids[::2, L // 2:] = 0  # half of them padded
    return ids


def model(cfg: dict, spec: InputSpec) -> torch.nn.Module:
    """Seeded, untrained; no output bias, so that its answers vary from text to text."""
    torch.manual_seed(3)
    net = build_model(cfg, spec).eval()
    torch.nn.init.zeros_(net.out.bias)
    return net


@pytest.mark.parametrize("cfg", [KIM, BAG])
def test_whole_vector_weights_make_the_permutation_invariant(cfg, spec):
    net = model(cfg, spec)
    order = torch.randperm(D, generator=torch.Generator().manual_seed(5))
    permuted = permute_dimensions(net, order)
    x = texts()
    assert torch.equal(permuted.embedding.weight, net.embedding.weight[:, order])  # the vectors
    with torch.no_grad():
        before, after = net(x), permuted(x)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)  # float rounding only
    assert torch.equal(after.argmax(1), before.argmax(1))


def test_two_d_kernels_see_a_different_input(spec):
    net = model(EMB2D, spec)
    permuted = permute_dimensions(net, torch.randperm(D, generator=torch.Generator().manual_seed(5)))
    with torch.no_grad():
        change = (permuted(texts()) - net(texts())).abs().max()
    assert change > 1e-3
    assert all(torch.equal(a, b) for a, b in zip(permuted.convs.parameters(),
                                                 net.convs.parameters(), strict=True))


def test_the_check_reports_kim_unchanged_and_two_d_changed(tmp_path: Path, spec):
    x = texts()
    paths = {}
    for name, cfg in (("kim", KIM), ("emb2d", EMB2D)):
        paths[name] = tmp_path / f"{name}.ckpt"
        save_checkpoint(paths[name], model(cfg, spec), cfg, spec, ["neg", "pos"], name)
    with torch.no_grad():  # labels a trained 2-D model would get right: its own answers
        y = model(EMB2D, spec)(x).argmax(1)
    result = permutation_check(paths, x, y, permutations=4, seed=0)
    assert result["kim"]["max_accuracy_change"] == 0
    assert result["kim"]["max_logit_change"] < 1e-4
    assert result["emb2d"]["accuracy"] == 1.0
    assert min(result["emb2d"]["permuted"]) < 1.0 and result["emb2d"]["max_accuracy_change"] > 0
    assert len(result["kim"]["permuted"]) == 4


def test_permutations_must_be_asked_for(tmp_path: Path, spec):
    with pytest.raises(ConfigError, match="permutations=0"):
        permutation_check({}, texts(), torch.zeros(N), permutations=0, seed=0)
