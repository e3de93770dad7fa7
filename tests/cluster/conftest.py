"""A real SLURM cluster and the shared stack, started once for the cluster tests.

The cluster is the code of `make cluster` (cnnlab.cluster) in a temporary state folder, with
its own names (cnc-t...), addresses (10.77.0.128/25) and ports, so that a `make cluster` of
the same machine is left alone. The stack is the code of `make services`, bound to the
bridge's address so that jobs on the nodes reach the tracking server. Without Slurm (or root)
the tests are skipped with the fix to run, or fail when CI=true.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig

from cnnlab.cluster import cluster as slurm_cluster
from cnnlab.core.errors import ServiceError
from cnnlab.services import clients, stack
from tests.conftest import ROOT
from tests.services.conftest import free_ports, kill, settings

HERE = Path(__file__).resolve().parent
HOST = "10.77.0.129"
NODES = {"node1": "10.77.0.139", "node2": "10.77.0.140"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/cluster carries the `cluster` mark."""
    for item in items:
        if item.path.is_relative_to(HERE) and not item.get_closest_marker("cluster"):
            item.add_marker("cluster")


@contextlib.contextmanager
def started(what: str, cfg: DictConfig, up: Callable[..., None], down: Callable[..., None]
            ) -> Iterator[DictConfig]:
    """`up(cfg)` for the session, `down(cfg)` and its state folder removed after; a failure
    to start is the session's failure (a skip, outside CI, without a program or root)."""
    quiet = {"say": lambda line: None}
    try:
        up(cfg, **quiet)
    except ServiceError as exc:
        down(cfg, **quiet)
        shutil.rmtree(cfg.state_dir, ignore_errors=True)
        if os.environ.get("CI", "").lower() == "true" or not any(
                why in str(exc) for why in ("not found", "needs root")):
            pytest.fail(f"{what} did not start: {exc}", pytrace=False)
        pytest.skip(str(exc))
    yield cfg
    down(cfg, **quiet)
    shutil.rmtree(cfg.state_dir, ignore_errors=True)


def killed(cfg: DictConfig, say: Callable[[str], None]) -> None:
    """Stop a stack whose state is deleted next at once (the graceful stop waits on SeaweedFS)."""
    kill(cfg)


@pytest.fixture(scope="session")
def cluster_overrides() -> list[str]:
    """The settings of the tests' cluster, as `python -m cnnlab cluster` takes them."""
    state = Path(tempfile.mkdtemp(prefix="cnnlab-cluster-"))
    return [f"state_dir={state}", "prefix=cnc-t", f"host_address={HOST}", "prefix_length=25",
            *(f"nodes.{n}={a}" for n, a in NODES.items()),
            f"slurmctld_port={free_ports(1, 1)[0]}", "memory_mb=3072"]


@pytest.fixture(scope="session")
def cluster(cluster_overrides: list[str]) -> Iterator[DictConfig]:
    """slurmctld and two slurmd, each node in its own network namespace."""
    with started("the SLURM cluster", slurm_cluster.load_config(cluster_overrides, root=ROOT),
                 slurm_cluster.up, slurm_cluster.down) as cfg:
        yield cfg


@pytest.fixture(scope="session")
def cluster_stack(cluster: DictConfig) -> Iterator[DictConfig]:
    """The shared stack exposed on the bridge's address (TLS, auth): what the nodes' jobs log to."""
    cfg = settings(Path(tempfile.mkdtemp(prefix="cnnlab-services-")),
                   f"expose={cluster.host_address}")
    with started("the service stack", cfg, stack.up, killed) as cfg:
        yield cfg


@pytest.fixture
def on_cluster(cluster, cluster_stack, monkeypatch) -> dict[str, str]:
    """The environment of a command that submits to the cluster: its slurm.conf, and the
    tracking server as the `pipeline` user, given only through MLflow's own variables (URI,
    user, password, CA). Jobs inherit it: sbatch exports the submitting environment."""
    keys = stack.credentials(Path(cluster_stack.state_dir))
    env = {**slurm_cluster.environment(cluster), **clients.env(cluster_stack, keys, "pipeline")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    return {**os.environ, **env}
