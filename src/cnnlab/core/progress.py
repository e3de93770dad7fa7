"""Progress of long loops: a live bar in an interactive terminal, nothing in a log file.

The mode comes from the config key `progress` (auto | true | false), which the stage contract
puts in the environment (`CNNLAB_PROGRESS`), so child processes (eSpeak synthesis, DDP ranks)
follow it too. `auto` shows bars only when stderr is a terminal and `CI` is not set, so logs
written to a file carry no carriage-return spam.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")
ENV = "CNNLAB_PROGRESS"


def set_mode(mode: str | bool) -> None:
    value = str(mode).lower()
    if value not in ("auto", "true", "false"):
        from cnnlab.core.errors import ConfigError

        raise ConfigError(f"progress={mode!r}: choose auto, true or false")
    os.environ[ENV] = value


def enabled(stream: IO[str] | None = None) -> bool:
    mode = os.environ.get(ENV, "auto")
    if mode in ("true", "false"):
        return mode == "true"
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    return (stream or sys.stderr).isatty() and not ci


def progress(items: Iterable[T], desc: str, total: int | None = None,
             stream: IO[str] | None = None) -> Iterator[T] | Iterable[T]:
    """`items`, with a bar named `desc` when progress is enabled."""
    if not enabled(stream):
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, total=total, file=stream or sys.stderr, leave=False,
                dynamic_ncols=True)
