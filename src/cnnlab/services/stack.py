"""The stack as a whole: its settings, its generated credentials, and up / down / status.

`up` is idempotent: a service that answers its health check is left alone, so a second
`make services` only reports. Services start in dependency order (PostgreSQL and the object
store before MLflow) and stop in the reverse one. A file lock keeps two `up`s from racing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig

from cnnlab.core.io import write_text
from cnnlab.core.settings import load_settings
from cnnlab.services import clients, object_store, postgres, tls, tracking_server

CREDENTIALS = "credentials.env"


def load_config(overrides: Sequence[str] = (), root: Path | None = None) -> DictConfig:
    """conf/services.yaml with `key=value` overrides; `state_dir` made absolute under the root."""
    return load_settings("services", overrides, root)


def _secret() -> str:
    return secrets.token_urlsafe(24)


def _access_key() -> str:
    return "CNNLAB" + secrets.token_hex(7).upper()


# every secret of the stack, and how it is made; one added by a newer cnnlab is made on the
# next start, the others are kept
SECRETS: dict[str, Callable[[], str]] = {
    "POSTGRES_PASSWORD": _secret,
    "AWS_ACCESS_KEY_ID": _access_key, "AWS_SECRET_ACCESS_KEY": _secret,  # the stack's own
    "PIPELINE_AWS_ACCESS_KEY_ID": _access_key, "PIPELINE_AWS_SECRET_ACCESS_KEY": _secret,
    "READER_AWS_ACCESS_KEY_ID": _access_key, "READER_AWS_SECRET_ACCESS_KEY": _secret,
    "MLFLOW_ADMIN_PASSWORD": _secret, "MLFLOW_PIPELINE_PASSWORD": _secret,
    "MLFLOW_READER_PASSWORD": _secret, "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret,
    "WEED_JWT_SIGNING_KEY": _secret, "WEED_JWT_SIGNING_READ_KEY": _secret,
    "WEED_JWT_FILER_SIGNING_KEY": _secret, "WEED_JWT_FILER_SIGNING_READ_KEY": _secret,
}


def credentials(state: Path) -> dict[str, str]:
    """The stack's secrets, generated on first use into `<state>/credentials.env` (mode 0600)."""
    path = state / CREDENTIALS
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o711)  # others may only pass through, to the PostgreSQL user's folder
    text = path.read_text() if path.exists() else ""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    values = {key: value for key, value in pairs}
    missing = {key: make() for key, make in SECRETS.items() if key not in values}
    if missing:
        values.update(missing)
        write_text(path, "".join(f"{k}={v}\n" for k, v in values.items()), mode=0o600)
    return values


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
        if cfg.expose:
            tls.ensure(cfg)
        for service in SERVICES:
            if service.ready(cfg, keys):
                say(f"{service.name:<13} already up   {service.address(cfg)}")
                continue
            service.start(cfg, state, keys)
            say(f"{service.name:<13} started      {service.address(cfg)}")
        clients.write_env_files(cfg, keys)


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


def connect_dvc_remote(cfg: DictConfig, repo: Path, identity: str = "pipeline") -> None:
    """Give `repo`'s DVC remote the endpoint and keys, in `.dvc/config.local` (never committed)."""
    keys = credentials(Path(cfg.state_dir))
    clients.write_dvc_remote(repo, cfg.dvc_remote, clients.dvc_remote(cfg, keys, identity))
