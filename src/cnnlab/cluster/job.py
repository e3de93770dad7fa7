"""What a process learns from SLURM about the job it runs in (its environment variables)."""

from __future__ import annotations

import os

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
