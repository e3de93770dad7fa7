"""`python -m cnnlab cluster`: the cluster of `make cluster`, as its user sees it."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def cnnlab_cluster(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", "cluster", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_second_up_reports_and_status_lists_the_nodes(cluster, cluster_overrides):
    again = cnnlab_cluster("up", *cluster_overrides)
    assert again.returncode == 0, again.stderr
    assert [line.split()[:3] for line in again.stdout.splitlines()[1:5]] == [
        ["munged", "already", "up"], ["slurmctld", "already", "up"],
        ["slurmd-node1", "already", "up"], ["slurmd-node2", "already", "up"]]
    status = cnnlab_cluster("status", *cluster_overrides)
    assert status.returncode == 0, status.stderr
    assert "node          node1 idle 1 3072" in status.stdout
    assert "node          node2 idle 1 3072" in status.stdout
    key = Path(cluster.state_dir) / "munge" / "munge.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o400
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "cnc-tnode1" in namespaces and "cnc-tnode2" in namespaces


def test_a_wrong_setting_is_one_line(cluster_overrides):
    bad = cnnlab_cluster("status", *cluster_overrides, "cpus_per_node=2")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: cluster override " + " ".join([*cluster_overrides, "cpus_per_node=2"])
        + ": Key 'cpus_per_node' is not in struct (keys: conf/cluster.yaml)"]
