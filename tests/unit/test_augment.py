"""Training-time shift and mask: what they do to a batch, and the config they accept."""

import pytest
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.training.augment import ShiftAndMask
from cnnlab.training.batches import TensorBatches


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_all_zero_or_absent_config_means_no_augmentation() -> None:
    assert ShiftAndMask.from_cfg(None) is None
    assert ShiftAndMask.from_cfg({"shift": [0, 0], "mask": [0, 0]}) is None
    assert ShiftAndMask.from_cfg({"shift": [2, 0]}) == ShiftAndMask((2, 0), (0, 0))


@pytest.mark.parametrize("cfg, words", [
    ({"shift": [-1, 0]}, "negative"), ({"mask": "wide"}, "rows, columns"),
    ({"roll": [1, 1]}, "unknown keys"), ([2, 0], "expected"),
])
def test_bad_config_is_a_config_error_naming_the_key(cfg, words) -> None:
    with pytest.raises(ConfigError, match=words):
        ShiftAndMask.from_cfg(cfg)


def test_shift_along_rows_moves_each_example_by_at_most_the_limit() -> None:
    x = torch.zeros(64, 1, 10, 6)
    x[:, :, 5, :] = 1.0  # one bright row in the middle
    out = ShiftAndMask(shift=(2, 0))(x, gen())
    rows = out[:, 0, :, 0].argmax(dim=1)
    assert set(rows.tolist()) == {3, 4, 5, 6, 7}  # every offset in [-2, 2] occurs
    assert torch.equal(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)))  # nothing left the frame
    assert torch.equal(out[:, :, :, 0:1].expand_as(out), out)  # columns untouched


def test_shift_fills_with_zeros_where_content_leaves() -> None:
    x = torch.ones(32, 1, 8, 8)
    out = ShiftAndMask(shift=(0, 3))(x, gen(1))
    lost = 64 - out.sum(dim=(1, 2, 3))
    assert set(lost.tolist()) <= {0, 8, 16, 24} and lost.max() == 24


def test_mask_blanks_one_band_of_at_most_the_limit() -> None:
    x = torch.ones(200, 1, 12, 5)
    out = ShiftAndMask(mask=(4, 0))(x, gen())
    blank_rows = (out[:, 0, :, :].sum(dim=2) == 0).sum(dim=1)
    assert blank_rows.max() == 4 and blank_rows.min() == 0
    assert torch.equal(out.sum(dim=(1, 2, 3)), 5.0 * (12 - blank_rows))


def test_same_seed_same_batches_and_eval_batches_untouched() -> None:
    x, y = torch.randn(40, 1, 8, 8), torch.arange(40)
    aug = ShiftAndMask((2, 2), (2, 2))
    a = [b[0] for b in TensorBatches(x, y, 16, True, seed=3, augment=aug)]
    b = [b[0] for b in TensorBatches(x, y, 16, True, seed=3, augment=aug)]
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    plain = [b[0] for b in TensorBatches(x, y, 16, True, seed=3)]
    assert not all(torch.equal(p, q) for p, q in zip(a, plain, strict=True))


def test_sequences_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="image-like"):
        ShiftAndMask(shift=(1, 1))(torch.zeros(4, 20, dtype=torch.long), gen())
