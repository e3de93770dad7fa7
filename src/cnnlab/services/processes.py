"""Background server processes: start detached with a pid file and a log, stop by process group.

A service is up when it answers its own health check, never merely because a pid file exists.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cnnlab.core.errors import ServiceError


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def claim_ports(host: str, ports: Mapping[str, int]) -> None:
    """Fail in one line, naming the port and the key that moves it, when another program has it."""
    for key, port in ports.items():
        if port_in_use(host, port):
            raise ServiceError(f"port {host}:{port} ({key}) is already in use by another program: "
                               f"stop that program, or pick another port with "
                               f"`make services SERVICES=\"{key}=<port>\"`")


def wait_until(ready: Callable[[], bool], what: str, timeout: float, log: Path,
               proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{what} exited with code {proc.returncode} while starting; "
                               f"see its log: {log}")
        time.sleep(0.3)
    raise ServiceError(f"{what} did not answer within {timeout:.0f} s; see its log: {log}")


def spawn(name: str, argv: Sequence[str], state: Path, env: Mapping[str, str] | None = None
          ) -> subprocess.Popen:
    """Start `argv` in its own session (it outlives `make services`), logging to logs/<name>.log."""
    log = state / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})}, cwd=state)
    pidfile(state, name).write_text(str(proc.pid))
    return proc


def pidfile(state: Path, name: str) -> Path:
    path = state / "run" / f"{name}.pid"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat_line.rsplit(")", 1)[1].split()[0] != "Z"


def stop(name: str, state: Path, timeout: float = 30.0) -> bool:
    """SIGTERM the process group of `name`, then SIGKILL after `timeout`; False if none ran."""
    path = pidfile(state, name)
    if not path.exists():
        return False
    pid = int(path.read_text())
    running = alive(pid)
    if running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
    path.unlink()
    return running

