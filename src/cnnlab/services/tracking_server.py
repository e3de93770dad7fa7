"""`mlflow server` on PostgreSQL, proxying artifacts to the object store (`--serve-artifacts`),
so that clients need only the tracking URI, never storage keys.

The schema is created or migrated once, in one process, before the server starts: several
workers racing to create it on a fresh database is a known failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from cnnlab.core.errors import ServiceError
from cnnlab.services import object_store, postgres
from cnnlab.services.processes import claim_ports, spawn, stop, wait_until

NAME = "mlflow"
# `mlflow db upgrade <uri>` (creates the tables of an empty database), with the URI taken from
# the environment rather than argv, where `ps` would show its password
MIGRATE = ("import os; from mlflow.db import upgrade; "
           "upgrade.main([os.environ['MLFLOW_BACKEND_STORE_URI']], standalone_mode=False)")


def url(cfg: DictConfig) -> str:
    return f"http://{cfg.host}:{cfg.mlflow.port}"


def ready(cfg: DictConfig) -> bool:
    import requests

    try:
        return requests.get(f"{url(cfg)}/health", timeout=2).ok
    except requests.RequestException:
        return False


def storage_env(cfg: DictConfig, keys: dict[str, str]) -> dict[str, str]:
    """What the server (and only the server) needs to reach the object store."""
    return {"MLFLOW_S3_ENDPOINT_URL": object_store.endpoint(cfg), "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": keys["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": keys["AWS_SECRET_ACCESS_KEY"]}


def migrate(backend: str) -> None:
    """Create MLflow's tables on a new database, or upgrade an older schema, in one process."""
    done = subprocess.run([sys.executable, "-c", MIGRATE], capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_BACKEND_STORE_URI": backend})
    if done.returncode:
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ServiceError(f"MLflow's schema migration failed: {last[0]}")


def start(cfg: DictConfig, state: Path, keys: dict[str, str]) -> None:
    claim_ports(cfg.host, {"mlflow.port": cfg.mlflow.port})
    backend = postgres.uri(cfg, keys["POSTGRES_PASSWORD"], "mlflow")
    migrate(backend)
    bucket = cfg.object_store.buckets.artifacts
    argv = [sys.executable, "-m", "mlflow", "server", "--host", cfg.host,
            "--port", str(cfg.mlflow.port), "--workers", str(cfg.mlflow.workers),
            "--serve-artifacts", "--artifacts-destination", f"s3://{bucket}"]
    env = {**storage_env(cfg, keys), "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_BACKEND_STORE_URI": backend}  # in the environment: argv is visible in `ps`
    proc = spawn(NAME, argv, state, env=env)
    wait_until(lambda: ready(cfg), "the MLflow server", 120, state / "logs" / f"{NAME}.log", proc)


def stop_server(state: Path) -> bool:
    return stop(NAME, state)
