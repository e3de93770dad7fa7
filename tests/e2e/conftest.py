"""A shrunk copy of this repository, a git repo of its own, where the e2e tests run DVC."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import ROOT, copy_store

Run = Callable[..., subprocess.CompletedProcess]
GIT_USER = ("-c", "user.name=t", "-c", "user.email=t@t")


def merge(base: dict, edits: Mapping[str, Any]) -> dict:
    """`edits` into `base`, nested mappings merged key by key."""
    for key, value in edits.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def copy_repo(dest: Path, mlflow_template: Path, conf_edits: Mapping[str, Mapping[str, Any]]
              ) -> tuple[Path, Run]:
    """The tracked and untracked (not ignored) files copied to `dest`, with `conf_edits`
    ({file under conf/: values}) merged in, params composed and committed as `main`. Returns
    the copy and `run(*cmd, check=True)`, which runs a command there against the copy's store."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    for rel, values in conf_edits.items():
        path = dest / "conf" / rel
        path.write_text(yaml.safe_dump(merge(yaml.safe_load(path.read_text()), values),
                                       sort_keys=False))
    copy_store(mlflow_template, dest / "mlflow.db")  # migrated once per session (conftest)
    env = {**os.environ, "PYTHONPATH": str(dest / "src"),
           "MLFLOW_TRACKING_URI": f"sqlite:///{dest / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DVC_SITE_CACHE_DIR": str(dest / ".dvc" / "tmp" / "site")}

    def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(cmd, cwd=dest, env=env, capture_output=True, text=True, timeout=900)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n"
                                 f"{result.stderr[-3000:]}")
        return result

    run(sys.executable, "pipelines/compose_params.py")
    run("git", "init", "-q", "-b", "main")
    run("git", *GIT_USER, "add", "-A")
    run("git", *GIT_USER, "commit", "-qm", "copy")
    return dest, run


def exp_show(table: list) -> dict[str, dict[str, Any]]:
    """{name or rev: {"params": params.yaml's data, "metrics": {file: data}}} of every commit
    and experiment in `dvc exp show --json`."""
    found: dict[str, dict[str, Any]] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and "rev" in node and data.get("params"):
                found[node.get("name") or node["rev"]] = {
                    "params": data["params"]["params.yaml"]["data"],
                    "metrics": {f: m["data"] for f, m in (data.get("metrics") or {}).items()}}
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(table)
    return found
