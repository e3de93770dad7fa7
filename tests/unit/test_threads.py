import pytest
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.core.threads import torch_threads


def test_threads_set_inside_and_restored_after() -> None:
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_null_threads_leave_torch_alone() -> None:
    before = torch.get_num_threads()
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_restored_when_the_block_fails() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("count", [-2, "two", 1.5, True])
def test_bad_thread_count_is_a_config_error_naming_the_key(count) -> None:
    with pytest.raises(ConfigError, match="trainer.threads"), torch_threads(count, "trainer.threads"):
        pass
