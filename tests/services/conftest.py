"""The shared stack, started for these tests on free ports in a temporary state folder, on a
"server host" and exposed to a "client host" (two network namespaces, tests/services/hosts.py).

The same code as `make services` (cnnlab.services.stack), so the tests start real PostgreSQL,
SeaweedFS and `mlflow server` processes, and stop them at the end. Without PostgreSQL's server
binaries, or where namespaces cannot be made (not root), the tests are skipped with the fix to
run, or fail when CI=true.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig

from cnnlab.core.errors import ServiceError
from cnnlab.services import postgres, processes, stack
from tests.conftest import ROOT
from tests.services.hosts import Hosts, missing, two_hosts

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/services carries the `services` mark."""
    for item in items:
        if item.path.is_relative_to(HERE) and not item.get_closest_marker("services"):
            item.add_marker("services")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(count: int, offset: int) -> list[int]:
    """`count` ports p, each with p + offset (its gRPC twin) free too, below 65536."""
    found = []
    port = 20000 + os.getpid() % 5000
    while len(found) < count:
        port += 7
        if _free(port) and _free(port + offset):
            found.append(port)
    return found


def settings(state: Path, *overrides: str) -> DictConfig:
    offset = 10000
    pg, s3, master, volume, filer, mlflow = free_ports(6, offset)
    return stack.load_config([
        *overrides, f"state_dir={state}", f"postgres.port={pg}", f"object_store.s3_port={s3}",
        f"object_store.master_port={master}", f"object_store.volume_port={volume}",
        f"object_store.filer_port={filer}", f"object_store.grpc_offset={offset}",
        f"mlflow.port={mlflow}", "mlflow.workers=2"], root=ROOT)


def kill(cfg: DictConfig) -> None:
    """Stop the stack at once, for a state that is deleted next: SIGKILL, not the graceful
    stop, in which SeaweedFS's filer waits 15 s on its own gRPC streams."""
    state = Path(cfg.state_dir)
    for pidfile in (state / "run").glob("*.pid"):
        pid = int(pidfile.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while processes.alive(pid):
            time.sleep(0.05)
        pidfile.unlink()
    postgres.stop(cfg, state, mode="immediate")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the service stack did not start: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def hosts() -> Iterator[Hosts]:
    """The two hosts; this process runs on the server host while the package's tests run."""
    reason = missing()
    if reason:
        _unavailable(reason)
    with two_hosts() as made:
        yield made


@pytest.fixture(scope="package")
def services(hosts) -> Iterator[DictConfig]:
    """A running stack exposed on the server host's address; the state folder is under /tmp,
    which the PostgreSQL user can enter."""
    state = Path(tempfile.mkdtemp(prefix="cnnlab-services-"))
    cfg = settings(state, f"expose={hosts.server}")
    try:
        stack.up(cfg, say=lambda line: None)
    except ServiceError as exc:
        stack.down(cfg, say=lambda line: None)
        shutil.rmtree(state, ignore_errors=True)
        if "not found" not in str(exc):
            pytest.fail(f"the service stack did not start: {exc}", pytrace=False)
        _unavailable(str(exc))
    yield cfg
    kill(cfg)
    shutil.rmtree(state, ignore_errors=True)
