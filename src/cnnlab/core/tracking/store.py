"""The tracking store: MLflow pointed at it, its schema made once, and writes that share it
safely with other processes (a file lock for what must happen once, retries for a busy
SQLite database)."""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import mlflow
from filelock import FileLock
from mlflow.tracking import MlflowClient

from cnnlab.core.errors import TrackingError
from cnnlab.core.paths import state_dir, tracking_uri

LOCK_TIMEOUT = 120  # seconds to wait for another process's schema or experiment creation
RETRIES = 12  # attempts of a write that meets a locked SQLite database (about 10 s in all)
T = TypeVar("T")
_ready: set[str] = set()  # stores this process has already prepared


def lock_path(uri: str) -> Path:
    """The file lock of a store: beside a SQLite database, else one per store in the project's
    state folder (not at a predictable path in /tmp, which another user could hold)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///") + ".lock")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return state_dir() / "locks" / f"tracking-{digest}.lock"


def store_lock(uri: str) -> FileLock:
    path = lock_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path, timeout=LOCK_TIMEOUT)


def configure(start: str | Path | None = None) -> str:
    """Point MLflow at the store; a new SQLite store gets its schema once, under the lock; a
    server must answer now (TrackingError otherwise, within about 10 s)."""
    uri = tracking_uri(start)
    mlflow.set_tracking_uri(uri)
    if uri not in _ready:
        if uri.startswith(("http://", "https://")):
            check_server(uri)
        with store_lock(uri):
            retrying(MlflowClient(uri).search_experiments, max_results=1)  # creates the schema
        _ready.add(uri)
    return uri


def check_server(uri: str, attempts: int = 3) -> None:
    """The server answers, its certificate is trusted, and the credentials (if any) are taken."""
    import requests

    verify = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    credentials = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user else None
    for attempt in range(attempts):
        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=2, verify=verify).raise_for_status()
            answer = requests.get(f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search",
                                  params={"max_results": 1}, timeout=5, verify=verify,
                                  auth=credentials)
            if answer.status_code in (401, 403):
                raise TrackingError(f"tracking server {uri} refused "
                                    f"{'user ' + user if user else 'a request without a user'} "
                                    f"({answer.status_code}): set MLFLOW_TRACKING_USERNAME and "
                                    "MLFLOW_TRACKING_PASSWORD (the stack's clients/*.env)")
            return
        except requests.exceptions.SSLError as exc:
            raise TrackingError(f"tracking server {uri}: its TLS certificate is not trusted "
                                f"({_ssl_reason(exc)}): set MLFLOW_TRACKING_SERVER_CERT_PATH to "
                                "the stack's CA (tls/ca.pem)") from None
        except requests.RequestException as exc:
            reason = type(exc).__name__
            if attempt < attempts - 1:
                time.sleep(1.0)
    source = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "the default"
    raise TrackingError(f"tracking server {uri} is unreachable ({reason}); it comes from "
                        f"{source}: start the server, or unset MLFLOW_TRACKING_URI to log to "
                        "the project's mlflow.db")


def _ssl_reason(exc: Exception) -> str:
    """The certificate problem OpenSSL names, e.g. `certificate verify failed: self-signed ...`."""
    text = str(exc)
    start = text.find("certificate verify failed")
    return text[start:].split(" (_ssl")[0].rstrip(")'\"") if start >= 0 else type(exc).__name__


def retrying(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, tried again while a concurrent writer holds the SQLite database."""
    for attempt in range(RETRIES):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - MLflow wraps SQLAlchemy's errors in several types
            if "database is locked" not in str(exc) or attempt == RETRIES - 1:
                raise
            time.sleep(min(2.0, 0.05 * 2**attempt) * (1 + random.random()))
    raise AssertionError("unreachable")


def artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a SQLite store live beside the database, never in the current directory.

    (MLflow's default, `./mlruns`, would scatter them into DVC's temporary copies.)
    A server URI keeps the server's own artifact store.
    """
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / experiment).as_uri()
