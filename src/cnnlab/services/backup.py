"""`services backup <dir>` and `services restore <dir>`: the stack's data, copied out and back.

A backup holds a `pg_dump` of every database (each one a consistent snapshot, taken while the
stack runs), every object of both buckets, the stack's credentials and TLS files (so that
clients keep their passwords, keys and CA after a restore), and `manifest.json` with the
sha256 of every file. Databases are dumped before the objects are copied, so every artifact a
dumped run names is in the copy. A restore checks the whole manifest before it touches
anything, and only rebuilds a stack whose state folder holds no data.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from pathlib import Path

from omegaconf import DictConfig

from cnnlab.core.errors import ServiceError
from cnnlab.core.io import sha256_file, temp_dir_beside, write_text
from cnnlab.services import object_store, postgres, stack, tls

MANIFEST = "manifest.json"
SECRETS = (stack.CREDENTIALS, "tls")  # under the state folder


def _pg(cfg: DictConfig, keys: dict[str, str], tool: str, *args: str) -> None:
    """A PostgreSQL client tool over TCP, its password in the environment (never in argv)."""
    cmd = [postgres.binary(tool), "-h", cfg.host, "-p", str(cfg.postgres.port),
           "-U", cfg.postgres.superuser, *args]
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "PGPASSWORD": keys["POSTGRES_PASSWORD"]})
    if done.returncode:
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ServiceError(f"{tool} {args[-1]} failed: {last[0]}")


def backup(cfg: DictConfig, dest: Path) -> dict:
    """Copy the running stack into the new folder `dest`; returns the manifest."""
    if dest.exists() and any(dest.iterdir()):
        raise ServiceError(f"backup folder {dest} is not empty: give a new folder")
    state = Path(cfg.state_dir)
    keys = stack.credentials(state)
    if not stack.status(cfg, say=lambda line: None):
        raise ServiceError("the stack is not (fully) running: `make services`, then back up")
    work = temp_dir_beside(dest)
    work.chmod(0o700)
    try:
        (work / "postgres").mkdir()
        for database in cfg.postgres.databases:
            _pg(cfg, keys, "pg_dump", "-Fc", "-f", str(work / "postgres" / f"{database}.dump"),
                "-d", database)
        s3 = object_store.client(cfg, keys)
        for bucket in cfg.object_store.buckets.values():
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    target = work / "objects" / bucket / item["Key"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    s3.download_file(bucket, item["Key"], str(target))
        for name in SECRETS:
            if (state / name).is_dir():
                shutil.copytree(state / name, work / "secrets" / name)
            elif (state / name).exists():
                (work / "secrets").mkdir(exist_ok=True)
                shutil.copy2(state / name, work / "secrets" / name)
        manifest = {"created": datetime.datetime.now(datetime.UTC).isoformat(),
                    "databases": list(cfg.postgres.databases),
                    "buckets": list(cfg.object_store.buckets.values()),
                    "files": {path.relative_to(work).as_posix(): sha256_file(path)
                              for path in sorted(work.rglob("*")) if path.is_file()}}
        write_text(work / MANIFEST, json.dumps(manifest, indent=1) + "\n", mode=0o600)
        if dest.exists():
            dest.rmdir()
        os.replace(work, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def check(src: Path) -> dict:
    """The manifest of backup `src`, once every file it lists is there with its sha256."""
    try:
        manifest = json.loads((src / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ServiceError(f"backup {src}: no readable {MANIFEST} ({type(exc).__name__})"
                           ) from None
    for name, digest in files.items():
        path = src / name
        if not path.is_file():
            raise ServiceError(f"backup {src}: {name} is missing (listed in {MANIFEST})")
        if sha256_file(path) != digest:
            raise ServiceError(f"backup {src}: {name} does not match its sha256 in {MANIFEST}")
    return manifest


def _has_data(state: Path) -> bool:
    return (state / "postgres" / "data").exists() or (state / "objects" / "data").exists()


def restore(cfg: DictConfig, src: Path, say=print) -> None:
    """Rebuild the stack of `cfg`, whose state holds no data, from backup `src`."""
    manifest = check(src)
    state = Path(cfg.state_dir)
    if _has_data(state):
        raise ServiceError(f"state folder {state} already holds a stack: restore only into an "
                           "empty one (stop the stack and move that folder away first)")
    state.mkdir(parents=True, exist_ok=True)
    for name in SECRETS:
        if (src / "secrets" / name).is_dir():
            shutil.copytree(src / "secrets" / name, state / name, dirs_exist_ok=True)
        elif (src / "secrets" / name).exists():
            shutil.copy2(src / "secrets" / name, state / name)
    keys = stack.credentials(state)
    if cfg.expose:
        tls.ensure(cfg)
    postgres.start(cfg, state, keys["POSTGRES_PASSWORD"])
    for database in manifest["databases"]:
        _pg(cfg, keys, "pg_restore", "--no-owner", "--exit-on-error", "-d", database,
            str(src / "postgres" / f"{database}.dump"))
    object_store.start(cfg, state, keys)
    s3 = object_store.client(cfg, keys)
    for name in manifest["files"]:
        parts = name.split("/", 2)
        if parts[0] == "objects":
            s3.upload_file(str(src / name), parts[1], parts[2])
    stack.up(cfg, say=say)
