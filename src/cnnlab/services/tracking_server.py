"""`mlflow server` on PostgreSQL, proxying artifacts to the object store (`--serve-artifacts`),
so that clients need only the tracking URI, never storage keys.

It runs MLflow's basic-auth app (cnnlab.services.auth), over TLS when exposed (uvicorn's own
`--ssl-*` options), and without the GenAI job runner and its huey consumers, which cnnlab
never uses (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false).

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
from cnnlab.services import auth, object_store, postgres, tls
from cnnlab.services.processes import claim_ports, spawn, stop, wait_until

NAME = "mlflow"
# `mlflow db upgrade <uri>` (creates the tables of an empty database), with the URI taken from
# the environment rather than argv, where `ps` would show its password
MIGRATE = ("import os; from mlflow.db import upgrade; "
           "upgrade.main([os.environ['MLFLOW_BACKEND_STORE_URI']], standalone_mode=False)")


def url(cfg: DictConfig) -> str:
    if cfg.expose:
        return f"https://{cfg.expose}:{cfg.mlflow.port}"
    return f"http://{cfg.host}:{cfg.mlflow.port}"


def verify(cfg: DictConfig) -> str | bool:
    """What a client on this machine checks the server's certificate against."""
    return str(tls.files(cfg)["ca"]) if cfg.expose else True


def ready(cfg: DictConfig) -> bool:
    import requests

    try:
        return requests.get(f"{url(cfg)}/health", timeout=2, verify=verify(cfg)).ok
    except (requests.RequestException, OSError):
        return False


def storage_env(cfg: DictConfig, keys: dict[str, str]) -> dict[str, str]:
    """What the server (and only the server) needs to reach the object store."""
    env = {"MLFLOW_S3_ENDPOINT_URL": object_store.endpoint(cfg), "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": keys["AWS_ACCESS_KEY_ID"],
           "AWS_SECRET_ACCESS_KEY": keys["AWS_SECRET_ACCESS_KEY"]}
    if cfg.expose:
        env["AWS_CA_BUNDLE"] = str(tls.files(cfg)["ca"])
    return env


def migrate(backend: str) -> None:
    """Create MLflow's tables on a new database, or upgrade an older schema, in one process."""
    done = subprocess.run([sys.executable, "-c", MIGRATE], capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_BACKEND_STORE_URI": backend})
    if done.returncode:
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ServiceError(f"MLflow's schema migration failed: {last[0]}")


def start(cfg: DictConfig, state: Path, keys: dict[str, str]) -> None:
    host = cfg.expose or cfg.host
    claim_ports(host, {"mlflow.port": cfg.mlflow.port})
    backend = postgres.uri(cfg, keys["POSTGRES_PASSWORD"], "mlflow")
    migrate(backend)
    bucket = cfg.object_store.buckets.artifacts
    argv = [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth",
            "--host", host, "--port", str(cfg.mlflow.port), "--workers", str(cfg.mlflow.workers),
            "--serve-artifacts", "--artifacts-destination", f"s3://{bucket}",
            "--allowed-hosts", f"{host},{host}:{cfg.mlflow.port}"]
    env = {**storage_env(cfg, keys), "MLFLOW_DISABLE_TELEMETRY": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_BACKEND_STORE_URI": backend,  # in the environment: argv is visible in `ps`
           **auth.server_env(state, postgres.uri(cfg, keys["POSTGRES_PASSWORD"], "mlflow_auth"),
                             keys)}
    if cfg.expose:
        files = tls.files(cfg)
        env["MLFLOW_UVICORN_OPTS"] = (f"--ssl-keyfile {files['key']} "
                                      f"--ssl-certfile {files['cert']}")
    proc = spawn(NAME, argv, state, env=env)
    wait_until(lambda: ready(cfg), "the MLflow server", 120, state / "logs" / f"{NAME}.log", proc)
    try:
        auth.ensure_users(url(cfg), keys, verify(cfg))
    except ServiceError:
        stop_server(state)
        raise


def stop_server(state: Path) -> bool:
    return stop(NAME, state)
