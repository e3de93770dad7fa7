"""slurm.conf for the cluster, generated from conf/cluster.yaml.

Chosen for a container without systemd or a writable cgroup tree: processes are tracked by
their parentage (proctrack/linuxproc), tasks are not pinned (task/none), nothing is
accounted (no slurmdbd: `scontrol show job` reads back what a job asked for). Each node's
slurmd has its own spool, pid file and log (`%n`: the node's name). `config_overrides`: the
nodes report the CPUs and memory configured here, not the machine's.
"""

from __future__ import annotations

import socket
from pathlib import Path

from omegaconf import DictConfig


def layout(state: Path) -> dict[str, Path]:
    """Where the cluster keeps each thing under its state folder."""
    return {"conf": state / "etc" / "slurm.conf", "cgroup": state / "etc" / "cgroup.conf",
            "key": state / "munge" / "munge.key", "socket": state / "munge" / "munge.socket",
            "ctld": state / "ctld",
            "spool": state / "spool", "logs": state / "logs", "run": state / "run"}


CGROUP_CONF = """\
# slurmd always loads a cgroup plugin; no plugin here uses it (proctrack/linuxproc, task/none)
CgroupPlugin=cgroup/v1
CgroupAutomount=no
"""


def render(cfg: DictConfig, state: Path) -> str:
    where = layout(state)
    nodes = ",".join(cfg.nodes)
    lines = [
        f"ClusterName={cfg.name}",
        f"SlurmctldHost={socket.gethostname().split('.')[0]}({cfg.host_address})",
        f"SlurmctldPort={cfg.slurmctld_port}",
        f"SlurmdPort={cfg.slurmd_port}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={where['socket']},cred_expire={int(cfg.cred_expire_s)}",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={where['ctld']}",
        f"SlurmdSpoolDir={where['spool']}/%n",
        f"SlurmctldPidFile={where['run']}/own/slurmctld.pid",
        f"SlurmdPidFile={where['run']}/own/slurmd-%n.pid",
        f"SlurmctldLogFile={where['logs']}/slurmctld.log",
        f"SlurmdLogFile={where['logs']}/slurmd-%n.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU_Memory",
        f"DefMemPerCPU={min(1024, int(cfg.memory_mb))}",
        "SchedulerType=sched/backfill",
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "MpiDefault=none",
        "SwitchType=switch/none",
        "JobRequeue=1",
        "KillWait=10",
        "MinJobAge=600",
        "InactiveLimit=0",
        "MailProg=/bin/true",
        *(f"NodeName={node} NodeAddr={address} CPUs={cfg.cpus} RealMemory={cfg.memory_mb} "
          "State=UNKNOWN" for node, address in cfg.nodes.items()),
        f"PartitionName={cfg.partition} Nodes={nodes} Default=YES MaxTime={cfg.max_time_min} "
        "State=UP",
    ]
    return "\n".join(lines) + "\n"
