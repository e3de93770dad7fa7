"""The stack as a whole: its settings, its generated credentials, and up / down / status.

`up` is idempotent: a service that answers its health check is left alone, so a second
`make services` only reports. Services start in dependency order (PostgreSQL and the object
store before MLflow) and stop in the reverse one. A file lock keeps two `up`s from racing.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig

from cnnlab.core.errors import ServiceError
from cnnlab.core.io import write_text
from cnnlab.core.settings import load_settings
from cnnlab.services import object_store, postgres, tracking_server

CREDENTIALS = "credentials.env"


def load_config(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """conf/services.yaml with `key=value` overrides; `state_dir` made absolute under the root."""
    return load_settings("services", overrides, root)


def credentials(state: Path) -> dict[str, str]:
    """The stack's secrets, generated on first use into `<state>/credentials.env` (mode 0600)."""
    path = state / CREDENTIALS
    if not path.exists():
        state.mkdir(parents=True, exist_ok=True)
        state.chmod(0o711)  # others may only pass through, to the PostgreSQL user's folder
        values = {"POSTGRES_PASSWORD": secrets.token_urlsafe(24),
                  "AWS_ACCESS_KEY_ID": "CNNLAB" + secrets.token_hex(7).upper(),
                  "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30)}
        write_text(path, "".join(f"{k}={v}\n" for k, v in values.items()), mode=0o600)
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


@dataclass(frozen=True)
class Service:
    name: str
    address: Callable[[DictConfig], str]
    ready: Callable[[DictConfig, dict[str, str]], bool]
    start: Callable[[DictConfig, Path, dict[str, str]], None]
    stop: Callable[[DictConfig, Path], bool]


SERVICES = (  # in start order
    Service("postgres", lambda cfg: f"{cfg.host}:{cfg.postgres.port}",
            lambda cfg, keys: postgres.ready(cfg, keys["POSTGRES_PASSWORD"]),
            lambda cfg, state, keys: postgres.start(cfg, state, keys["POSTGRES_PASSWORD"]),
            postgres.stop),
    Service("object store", object_store.endpoint, object_store.ready, object_store.start,
            lambda cfg, state: object_store.stop_server(state)),
    Service("mlflow", tracking_server.url, lambda cfg, keys: tracking_server.ready(cfg),
            tracking_server.start, lambda cfg, state: tracking_server.stop_server(state)),
)


def _lock(cfg: DictConfig) -> FileLock:
    Path(cfg.state_dir).mkdir(parents=True, exist_ok=True)
    return FileLock(Path(cfg.state_dir) / "stack.lock", timeout=300)


def up(cfg: DictConfig, say: Callable[[str], None] = print) -> None:
    state = Path(cfg.state_dir)
    with _lock(cfg):
        keys = credentials(state)
        for service in SERVICES:
            if service.ready(cfg, keys):
                say(f"{service.name:<13} already up   {service.address(cfg)}")
                continue
            service.start(cfg, state, keys)
            say(f"{service.name:<13} started      {service.address(cfg)}")


def down(cfg: DictConfig, say: Callable[[str], None] = print) -> None:
    state = Path(cfg.state_dir)
    with _lock(cfg):
        for service in reversed(SERVICES):
            stopped = service.stop(cfg, state)
            say(f"{service.name:<13} {'stopped' if stopped else 'was not running'}")


def status(cfg: DictConfig, say: Callable[[str], None] = print) -> bool:
    """Print each service's state; True when all answer."""
    keys = credentials(Path(cfg.state_dir))
    answers = [service.ready(cfg, keys) for service in SERVICES]
    for service, answer in zip(SERVICES, answers, strict=True):
        say(f"{service.name:<13} {'up' if answer else 'down':<12} {service.address(cfg)}")
    return all(answers)


def connect_dvc_remote(cfg: DictConfig, repo: Path) -> None:
    """Give `repo`'s DVC remote the endpoint and keys, in `.dvc/config.local` (never committed)."""
    keys = credentials(Path(cfg.state_dir))
    dvc = str(Path(sys.executable).parent / "dvc")
    settings = {"url": f"s3://{cfg.object_store.buckets.dvc}",
                "endpointurl": object_store.endpoint(cfg),
                "access_key_id": keys["AWS_ACCESS_KEY_ID"],
                "secret_access_key": keys["AWS_SECRET_ACCESS_KEY"]}
    for option, value in settings.items():
        done = subprocess.run([dvc, "remote", "modify", "--local", cfg.dvc_remote, option, value],
                              cwd=repo, capture_output=True, text=True)
        if done.returncode:
            raise ServiceError(f"dvc remote `{cfg.dvc_remote}` in {repo}: "
                               f"{done.stderr.strip().splitlines()[-1]}")
