"""The cluster as a whole: its settings, its munge key, and up / down / status.

`up` is idempotent: what answers is left alone. It starts, in order, the network (bridge and
namespaces), munged (one, on the host: its socket is a file, so every namespace reaches it),
slurmctld on the bridge's address, and a slurmd inside each node's namespace; it returns
once every node is idle. `down` stops them in reverse and removes the namespaces.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig

from cnnlab.cluster import network
from cnnlab.cluster.slurm_conf import CGROUP_CONF, layout, render
from cnnlab.core.errors import ServiceError
from cnnlab.core.io import temp_file_beside, write_text
from cnnlab.core.settings import load_settings
from cnnlab.services.processes import spawn, stop, wait_until

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "sinfo")


def load_config(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """conf/cluster.yaml with `key=value` overrides; `state_dir` made absolute under the root."""
    return load_settings("cluster", overrides, root)


def environment(cfg: DictConfig) -> dict[str, str]:
    """What a shell needs to use the cluster's commands (sbatch, srun, squeue, scontrol)."""
    return {"SLURM_CONF": str(layout(Path(cfg.state_dir))["conf"])}


def slurm(cfg: DictConfig, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """A Slurm command against this cluster; a failure is one line naming it."""
    done = subprocess.run(list(argv), capture_output=True, text=True,
                          env={**os.environ, **environment(cfg)})
    if check and done.returncode:
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServiceError(f"`{' '.join(argv)}` failed: {why[0]}")
    return done


def check_installed() -> None:
    missing = [name for name in BINARIES
               if not shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")]
    if missing:
        raise ServiceError(f"{', '.join(missing)} not found: install Slurm and munge with "
                           "`make system-deps` (Debian packages slurm-wlm and munge)")


def munge_key(path: Path) -> None:
    """1 KiB of random bytes, mode 0400, written once: the secret every daemon signs with."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    tmp = temp_file_beside(path)
    tmp.chmod(0o600)
    tmp.write_bytes(secrets.token_bytes(1024))
    tmp.chmod(0o400)
    os.replace(tmp, path)


def nodes_idle(cfg: DictConfig) -> bool:
    done = slurm(cfg, "sinfo", "-h", "-N", "-o", "%N %T", check=False)
    states = dict(line.split() for line in done.stdout.splitlines() if line.strip())
    return done.returncode == 0 and all(
        states.get(node, "").rstrip("*") in ("idle", "mixed", "allocated") for node in cfg.nodes)


def controller_up(cfg: DictConfig) -> bool:
    return slurm(cfg, "scontrol", "ping", check=False).stdout.count("is UP") > 0


def _daemons(cfg: DictConfig, state: Path) -> list[tuple[str, list[str], Callable[[], bool]]]:
    where, conf = layout(state), str(layout(state)["conf"])
    munged = [shutil.which("munged", path="/usr/sbin:/sbin") or "munged", "--foreground",
              "--force", f"--key-file={where['key']}", f"--socket={where['socket']}",
              f"--pid-file={where['run']}/own/munged.pid", f"--log-file={where['logs']}/munged.log",
              f"--seed-file={where['run']}/own/munged.seed"]
    slurmds = [(f"slurmd-{node}", network.in_node(cfg, node, ["slurmd", "-D", "-N", node, "-f",
                                                               conf]), lambda: False)
               for node in cfg.nodes]
    return [("munged", munged, lambda: where["socket"].exists()),
            ("slurmctld", ["slurmctld", "-D", "-f", conf], lambda: controller_up(cfg)),
            *slurmds]


def up(cfg: DictConfig, say: Callable[[str], None] = print) -> None:
    check_installed()
    state = Path(cfg.state_dir)
    where = layout(state)
    for folder in (where["ctld"], where["logs"], where["run"] / "own",
                   *(where["spool"] / node for node in cfg.nodes)):
        folder.mkdir(parents=True, exist_ok=True)
    write_text(where["conf"], render(cfg, state))
    write_text(where["cgroup"], CGROUP_CONF)
    munge_key(where["key"])
    network.up(cfg)
    say(f"network       up           {network.bridge(cfg)} {cfg.host_address}/"
        f"{cfg.prefix_length}, namespaces {', '.join(network.namespace(cfg, n) for n in cfg.nodes)}")
    for name, argv, ready in _daemons(cfg, state):
        if ready() or (name.startswith("slurmd") and nodes_idle(cfg)):
            say(f"{name:<13} already up")
            continue
        proc = spawn(name, argv, state, env=environment(cfg))
        if not name.startswith("slurmd"):
            wait_until(ready, name, 60, state / "logs" / f"{name}.log", proc)
        say(f"{name:<13} started")
    wait_until(lambda: nodes_idle(cfg), f"the nodes {', '.join(cfg.nodes)}", 60,
               where["logs"] / "slurmctld.log")
    say(f"nodes         idle         {', '.join(f'{n} {a}' for n, a in cfg.nodes.items())}")


def down(cfg: DictConfig, say: Callable[[str], None] = print) -> None:
    state = Path(cfg.state_dir)
    for name, _, _ in reversed(_daemons(cfg, state)):
        say(f"{name:<13} {'stopped' if stop(name, state, timeout=15) else 'was not running'}")
    say(f"network       {'removed' if network.down(cfg) else 'was not there'}")


def status(cfg: DictConfig, say: Callable[[str], None] = print) -> bool:
    """Print the controller's and the nodes' states; True when the controller answers and
    every node is idle or busy."""
    ctld = controller_up(cfg)
    say(f"slurmctld     {'up' if ctld else 'down':<12} {cfg.host_address}:{cfg.slurmctld_port}")
    if not ctld:
        return False
    listed = slurm(cfg, "sinfo", "-h", "-N", "-o", "%N %T %c %m", check=False).stdout
    for line in listed.splitlines():
        say(f"node          {line}")
    return nodes_idle(cfg)
