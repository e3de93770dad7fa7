import pytest
import torch

from cnnlab.core.errors import ConfigError
from cnnlab.core.threads import torch_threads

BASELINE = 3  # neither torch's default nor a count set below: a setting left behind shows


@pytest.fixture(autouse=True)
def distinct_baseline():
    """Start each test from BASELINE threads, so restoring and leaving alone are observable."""
    previous = torch.get_num_threads()
    torch.set_num_threads(BASELINE)
    yield
    torch.set_num_threads(previous)


def test_threads_set_inside_and_restored_after() -> None:
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == BASELINE


@pytest.mark.parametrize("count", [None, 0])
def test_null_threads_leave_torch_alone(count) -> None:
    with torch_threads(count):
        assert torch.get_num_threads() == BASELINE
    assert torch.get_num_threads() == BASELINE


def test_restored_when_the_block_fails() -> None:
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == BASELINE


@pytest.mark.parametrize("count", [-2, "two", 1.5, True])
def test_bad_thread_count_is_a_config_error_naming_the_key(count) -> None:
    with pytest.raises(ConfigError, match="trainer.threads"), torch_threads(count, "trainer.threads"):
        pass
