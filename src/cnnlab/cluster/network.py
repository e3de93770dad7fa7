"""The cluster's network: a bridge on the host and one network namespace per node, each joined
to the bridge by a veth pair, with its own address on a private subnet.

Namespaces separate the network only (addresses, ports, routes), not the filesystem or the
processes: each node's slurmd binds the same port on its own address, and traffic between
nodes crosses the veth pairs and the bridge.
"""

from __future__ import annotations

import subprocess

from omegaconf import DictConfig

from cnnlab.core.errors import ServiceError


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`ip <args>`; a failure is a ServiceError naming the command and iproute2's message."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode:
        why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServiceError(f"`ip {' '.join(args)}` failed: {why[0]} (the cluster needs root and "
                           "network namespaces: run as root, or in a container with NET_ADMIN)")
    return done


def bridge(cfg: DictConfig) -> str:
    return f"{cfg.prefix}br0"


def namespace(cfg: DictConfig, node: str) -> str:
    return f"{cfg.prefix}{node}"


def namespaces(cfg: DictConfig) -> set[str]:
    listed = ip("netns", "list", check=False).stdout.split("\n")
    return {line.split()[0] for line in listed if line.strip()}


def up(cfg: DictConfig) -> None:
    """Create the bridge and the nodes' namespaces (those already there are left alone)."""
    br, length = bridge(cfg), cfg.prefix_length
    if ip("link", "show", br, check=False).returncode:
        ip("link", "add", br, "type", "bridge")
        ip("addr", "add", f"{cfg.host_address}/{length}", "dev", br)
    ip("link", "set", br, "up")
    have = namespaces(cfg)
    for node, address in cfg.nodes.items():
        ns, host_end = namespace(cfg, node), namespace(cfg, node)
        if ns in have:
            continue
        ip("netns", "add", ns)
        ip("link", "add", host_end, "type", "veth", "peer", "name", f"{host_end}p")
        ip("link", "set", f"{host_end}p", "netns", ns)
        ip("link", "set", host_end, "master", br, "up")
        ip("-n", ns, "link", "set", f"{host_end}p", "name", "eth0")
        ip("-n", ns, "addr", "add", f"{address}/{length}", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "route", "add", "default", "via", cfg.host_address)


def down(cfg: DictConfig) -> bool:
    """Remove the namespaces (their veth pairs go with them) and the bridge; True if any was."""
    found = False
    have = namespaces(cfg)
    for node in cfg.nodes:
        if namespace(cfg, node) in have:
            ip("netns", "del", namespace(cfg, node))
            found = True
        ip("link", "del", namespace(cfg, node), check=False)
    if ip("link", "show", bridge(cfg), check=False).returncode == 0:
        ip("link", "del", bridge(cfg))
        found = True
    return found


def in_node(cfg: DictConfig, node: str, argv: list[str]) -> list[str]:
    """`argv` as run inside `node`'s namespace."""
    return ["ip", "netns", "exec", namespace(cfg, node), *argv]
