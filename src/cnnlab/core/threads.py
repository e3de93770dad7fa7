"""How many CPU threads torch may use inside one stage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from cnnlab.core.errors import ConfigError


@contextlib.contextmanager
def torch_threads(count: int | None, key: str = "threads") -> Iterator[None]:
    """Run the block with `count` intra-op threads (None or 0: leave torch's choice).

    Small convolutions on a busy machine run several times faster on one thread than on
    threads that wait for each other's cores; on an idle machine torch's default is best.
    `key` names the setting in errors.
    """
    if not count:
        yield
        return
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"{key}={count!r}: must be a positive number of threads or null")
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
