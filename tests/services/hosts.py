"""Two hosts on one machine: network namespaces joined by a veth pair on 10.66.0.0/24.

The server host's namespace is entered by this test process itself (setns, on the main thread,
which every stack process is started from), so the stack's 127.0.0.1 is the server host's own;
the client host runs its commands through `ip netns exec`. Both are removed afterwards.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
SUBNET = "10.66.0"


@dataclass(frozen=True)
class Hosts:
    server_ns: str
    client_ns: str
    server: str  # the server host's address on the link
    client: str

    def client_cmd(self, *argv: str) -> list[str]:
        """`argv`, run on the client host."""
        return ["ip", "netns", "exec", self.client_ns, *argv]


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _setns(fd: int) -> None:
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def missing() -> str | None:
    """Why two hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not shutil.which("ip"):
        return "`ip` (Debian package iproute2) was not found: make system-deps"
    return None


@contextlib.contextmanager
def two_hosts() -> Iterator[Hosts]:
    """Make both hosts, and enter the server host with this thread while the block runs."""
    tag = str(os.getpid() % 100000)
    hosts = Hosts(f"cnt-srv-{tag}", f"cnt-cli-{tag}", f"{SUBNET}.1", f"{SUBNET}.2")
    server_end, client_end = f"cnt-s{tag}", f"cnt-c{tag}"
    home = open(f"/proc/{os.getpid()}/task/{os.getpid()}/ns/net")  # noqa: SIM115 - held open
    try:
        for ns in (hosts.server_ns, hosts.client_ns):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", server_end, "type", "veth", "peer", "name", client_end)
        for ns, end, address in ((hosts.server_ns, server_end, hosts.server),
                                 (hosts.client_ns, client_end, hosts.client)):
            _ip("link", "set", end, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", end)
            _ip("-n", ns, "link", "set", end, "up")
        with open(f"/run/netns/{hosts.server_ns}") as server:
            _setns(server.fileno())
        try:
            yield hosts
        finally:
            _setns(home.fileno())
    finally:
        home.close()
        for ns in (hosts.server_ns, hosts.client_ns):  # deleting a namespace drops its veth end
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
