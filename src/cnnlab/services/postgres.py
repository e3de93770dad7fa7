"""PostgreSQL for MLflow's runs (and Optuna's studies), run by an unprivileged user.

PostgreSQL refuses to run as root; started as root, the server runs as `postgres.run_as`, which
then owns the data folder. Password authentication (scram-sha-256) on TCP, never `trust`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnlab.core.errors import ServiceError
from cnnlab.services.processes import claim_ports


def binary(name: str) -> str:
    """A server binary: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which(name) or next(iter(sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version, reverse=True)), None)
    if not found:
        raise ServiceError(f"PostgreSQL's `{name}` was not found: install the server with "
                           "`make system-deps` (Debian package postgresql)")
    return found


def _version(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def uri(cfg: DictConfig, password: str, database: str, driver: str = "postgresql+psycopg") -> str:
    return (f"{driver}://{cfg.postgres.superuser}:{password}@{cfg.host}:{cfg.postgres.port}"
            f"/{database}")


def ready(cfg: DictConfig, password: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(uri(cfg, password, "postgres", driver="postgresql"),
                             connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _owner(cfg: DictConfig) -> dict[str, Any]:
    """subprocess arguments that drop root to the unprivileged user (none when not root)."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam(cfg.postgres.run_as)
    except KeyError:
        raise ServiceError(f"user `{cfg.postgres.run_as}` (postgres.run_as) does not exist: "
                           "create it (`useradd --system postgres`) or name another "
                           "unprivileged user") from None
    return {"user": user.pw_uid, "group": user.pw_gid}


def _check_reachable(folder: Path) -> None:
    """The unprivileged user must be able to walk down to its data folder."""
    if os.geteuid() != 0:
        return
    for parent in folder.resolve().parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            raise ServiceError(f"the PostgreSQL user cannot enter {parent}: `chmod o+x {parent}`,"
                               " or move state_dir (conf/services.yaml) to a folder it can reach")


def _run(cmd: list[str], owner: dict[str, Any], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd="/", **owner)
    if done.returncode:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServiceError(f"{what} failed: {last[0]}")


def start(cfg: DictConfig, state: Path, password: str) -> None:
    """initdb on first start, then pg_ctl start, then the databases; the caller checked `ready`."""
    claim_ports(cfg.host, {"postgres.port": cfg.postgres.port})
    home = state / "postgres"
    data, sockets = home / "data", home / "sockets"
    owner = _owner(cfg)
    for folder in (home, sockets):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        if owner:
            os.chown(folder, owner["user"], owner["group"])
    _check_reachable(home)
    if not (data / "PG_VERSION").exists():
        shutil.rmtree(data, ignore_errors=True)  # a half-made cluster from an interrupted initdb
        pwfile = home / "initdb.pw"
        pwfile.write_text(password)
        pwfile.chmod(0o600)
        if owner:
            os.chown(pwfile, owner["user"], owner["group"])
        try:
            _run([binary("initdb"), "-D", str(data), "-U", cfg.postgres.superuser,
                  "--pwfile", str(pwfile), "--auth", "scram-sha-256", "-E", "UTF8",
                  "--locale", "C"], owner, "initdb")
        finally:
            pwfile.unlink()
    _allow_host(data / "pg_hba.conf", cfg.host)
    options = f"-c listen_addresses={cfg.host} -p {cfg.postgres.port} -k {sockets}"
    _run([binary("pg_ctl"), "-D", str(data), "-l", str(home / "postgres.log"), "-o", options,
          "-w", "-t", "60", "start"], owner, f"starting PostgreSQL (log: {home / 'postgres.log'})")
    _create_databases(cfg, password)


def _allow_host(hba: Path, host: str) -> None:
    """initdb allows loopback only: a stack bound to another address (a cluster's bridge) lets
    its own server, which connects from that address, in with a password."""
    line = f"host all all {host}/32 scram-sha-256\n"
    if host not in ("127.0.0.1", "localhost") and line not in hba.read_text():
        with open(hba, "a") as out:
            out.write(line)


def _create_databases(cfg: DictConfig, password: str) -> None:
    import psycopg

    with psycopg.connect(uri(cfg, password, "postgres", driver="postgresql"),
                         autocommit=True) as conn:
        have = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in cfg.postgres.databases:
            if name not in have:
                conn.execute(f'CREATE DATABASE "{name}"')


def stop(cfg: DictConfig, state: Path) -> bool:
    data = state / "postgres" / "data"
    if not (data / "postmaster.pid").exists():
        return False
    _run([binary("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], _owner(cfg),
         "stopping PostgreSQL")
    return True
