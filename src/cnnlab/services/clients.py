"""What a client of the stack needs: the DVC remote's settings, and one env file per role.

- `.dvc/config.local` (mode 0600) gets the remote's endpoint, keys and CA, written here rather
  than by `dvc remote modify`, which would show the secret key in its argv;
- `<state>/clients/<role>.env` (mode 0600), for `pipeline` and `reader`: the tracking URI, the
  MLflow user and password, the CA to trust, and the role's S3 keys, as `KEY=value` lines that
  another host sources (`set -a; . reader.env; set +a`).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from cnnlab.core.io import write_text
from cnnlab.services import auth, object_store, tls, tracking_server

ROLES = ("pipeline", "reader")


def dvc_remote(cfg: DictConfig, keys: dict[str, str], identity: str) -> dict[str, str]:
    """The DVC remote's settings for the S3 `identity`."""
    pair = object_store.keys_of(keys, identity)
    settings = {"url": f"s3://{cfg.object_store.buckets.dvc}",
                "endpointurl": object_store.endpoint(cfg),
                "access_key_id": pair["AWS_ACCESS_KEY_ID"],
                "secret_access_key": pair["AWS_SECRET_ACCESS_KEY"]}
    if cfg.expose:
        settings["ssl_verify"] = str(tls.files(cfg)["ca"])
    return settings


def write_dvc_remote(repo: Path, remote: str, settings: dict[str, str]) -> None:
    """Set `remote`'s options in `repo`'s `.dvc/config.local`, keeping its other settings."""
    from configobj import ConfigObj

    path = repo / ".dvc" / "config.local"
    config = ConfigObj(str(path) if path.exists() else None)
    section = f'remote "{remote}"'
    config[section] = {**config.get(section, {}), **settings}
    config.filename = None  # write() then returns the lines
    write_text(path, "\n".join(config.write()) + "\n", mode=0o600)


def env(cfg: DictConfig, keys: dict[str, str], role: str) -> dict[str, str]:
    """A role's client settings: MLflow's URI, user and password, its CA, and S3 keys."""
    values = {"MLFLOW_TRACKING_URI": tracking_server.url(cfg),
              "MLFLOW_TRACKING_USERNAME": role,
              "MLFLOW_TRACKING_PASSWORD": auth.password(keys, role),
              # artifacts through the server, not by presigned URLs straight to the S3 store
              "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
              **object_store.keys_of(keys, role)}
    if cfg.expose:
        values["MLFLOW_TRACKING_SERVER_CERT_PATH"] = str(tls.files(cfg)["ca"])
    return values


def write_env_files(cfg: DictConfig, keys: dict[str, str]) -> Path:
    """`<state>/clients/<role>.env` for every role; returns the folder."""
    folder = Path(cfg.state_dir) / "clients"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    for role in ROLES:
        text = "".join(f"{key}={value}\n" for key, value in env(cfg, keys, role).items())
        write_text(folder / f"{role}.env", text, mode=0o600)
    return folder
