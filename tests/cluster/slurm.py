"""What the cluster tests share: the launcher's settings for this cluster, and reading back
what the scheduler holds for a job."""

from __future__ import annotations

import re
import subprocess

# The settings a site changes (conf/hydra/launcher/slurm.yaml): this cluster's partition, no
# GPUs, one CPU and 1 GB per job, a 7-minute limit
LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.partition=debug",
            "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=7"]


def scontrol_job(job_id: str, env: dict[str, str]) -> dict[str, str]:
    """`scontrol show job` of `job_id` as a dict (the scheduler's own record of the job)."""
    done = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True,
                          text=True, check=True)
    return dict(re.findall(r"(\w[\w:/]*)=(\S*)", done.stdout))
