"""What a process learns from SLURM about the job it runs in (its environment variables)."""

from __future__ import annotations

import os
import re
import socket
import subprocess

JOB_TAG = "cnnlab.slurm.job_id"


def slurm_tags() -> dict[str, str]:
    """Tags that tie an MLflow run to its SLURM job (none outside SLURM): the job id that
    `squeue`, `scontrol` and the job's log name, its array task, node and restarts."""
    env = os.environ
    if not env.get("SLURM_JOB_ID"):
        return {}
    tags = {JOB_TAG: env["SLURM_JOB_ID"], "cnnlab.slurm.nodes": env.get("SLURM_JOB_NODELIST", ""),
            "cnnlab.slurm.restarts": env.get("SLURM_RESTART_COUNT", "0")}
    if env.get("SLURM_ARRAY_JOB_ID"):
        tags["cnnlab.slurm.array_task"] = f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return tags


ENDED = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
         "OUT_OF_MEMORY", "PREEMPTED", "TIMEOUT"}


def job_alive(job_id: str) -> bool | None:
    """Whether SLURM still holds job `job_id` as pending or running (a requeued job waits as
    PENDING); None where `squeue` cannot say (no SLURM here, or its controller is down)."""
    try:
        done = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:  # a job that has left the controller's memory is "invalid"
        return False if "Invalid job id" in done.stderr else None
    states = set(done.stdout.split())
    return bool(states - ENDED)


def rendezvous() -> None:
    """Where the ranks of a multi-node DDP job under SLURM meet, when SLURM's names do not say.

    Lightning takes MASTER_ADDR from the first node's name; where that name does not resolve
    (this machine's namespaces, sites without DNS for node names), it is that node's NodeAddr
    in Slurm. Gloo binds the address its host name resolves to; GLOO_SOCKET_IFNAME, unless set,
    becomes the interface that reaches MASTER_ADDR. Every rank computes the same answer.
    """
    env = os.environ
    if int(env.get("SLURM_NNODES", "1") or 1) < 2 or not env.get("SLURM_JOB_NODELIST"):
        return
    if not env.get("MASTER_ADDR"):
        first = _scontrol("show", "hostnames", env["SLURM_JOB_NODELIST"]).split()[0]
        try:
            socket.gethostbyname(first)
            env["MASTER_ADDR"] = first
        except OSError:
            found = re.search(r"NodeAddr=(\S+)", _scontrol("show", "node", "-o", first))
            env["MASTER_ADDR"] = found.group(1) if found else first
    if not env.get("GLOO_SOCKET_IFNAME"):
        interface = _interface_to(env["MASTER_ADDR"])
        if interface:
            env["GLOO_SOCKET_IFNAME"] = interface


def _scontrol(*args: str) -> str:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True).stdout


def _interface_to(host: str) -> str | None:
    """The name of the network interface this machine uses to reach `host`."""
    import psutil

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect((socket.gethostbyname(host), 9))  # UDP: no packet is sent
        except OSError:
            return None
        local = s.getsockname()[0]
    return next((name for name, addresses in psutil.net_if_addrs().items()
                 if any(a.address == local for a in addresses)), None)
