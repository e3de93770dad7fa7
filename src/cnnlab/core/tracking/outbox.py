"""Logging entries: sent to the store now, or kept on disk while it is down, and replayed.

Every logging call is one JSON-able entry (`kind`, `run_id`, its values). A store that stops
answering is left alone for PAUSE_AFTER_FAILURE seconds, so a training does not wait on
every call; what is not sent goes to `<state dir>/outbox/<run id>/entries.jsonl` (artifacts
copied beside it, as outputs change), which `replay` sends once the store is back.

Replay is idempotent: after each entry that went through, the count of sent entries is saved
beside them (`sent`), so a replay that stops halfway and runs again starts after the last one
sent. The stored URI carries no credentials: replay takes them from the environment
(MLFLOW_TRACKING_USERNAME / _PASSWORD), as any client does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from cnnlab.core.io import write_text
from cnnlab.core.paths import outbox_dir
from cnnlab.core.tracking.store import retrying

PAUSE_AFTER_FAILURE = 30.0  # seconds during which calls go straight to the outbox
_down_until = 0.0  # monotonic time until which the store counts as down


def apply(client: MlflowClient, entry: Mapping[str, Any]) -> None:
    """Carry out one logging entry against the store."""
    from mlflow.entities import Metric, Param, RunTag

    run_id, kind = entry["run_id"], entry["kind"]
    if kind == "metrics":
        client.log_batch(run_id, metrics=[Metric(k, float(v), entry["timestamp"], entry["step"])
                                          for k, v in entry["metrics"].items()])
    elif kind == "params":
        client.log_batch(run_id, params=[Param(k, v) for k, v in entry["params"].items()])
    elif kind == "tags":
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in entry["tags"].items()])
    elif kind == "artifact":
        client.log_artifact(run_id, entry["path"], artifact_path=entry["folder"])
    elif kind == "dataset":
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(entry["name"], entry["digest"], "local", entry["source"])
        client.log_inputs(run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context",
                                                                   entry["context"])])])
    elif kind == "end":
        client.set_terminated(run_id, entry["status"])


def is_down() -> bool:
    """Whether a recent call found the store not answering (calls then skip it a while)."""
    return time.monotonic() < _down_until


def mark_down() -> None:
    global _down_until
    if not is_down():
        print(f"tracking: {mlflow.get_tracking_uri()} is not answering; keeping what cannot be "
              f"sent in {outbox_dir()} (send it later: python -m cnnlab.core.tracking replay)",
              file=sys.stderr)
    _down_until = time.monotonic() + PAUSE_AFTER_FAILURE


def send(entry: dict[str, Any], files: list[Path] | None = None) -> None:
    """Log `entry` to the active run now, or keep it in the outbox if the store is down."""
    entry = {"run_id": mlflow.active_run().info.run_id, **entry} if mlflow.active_run() \
        else entry
    if "run_id" not in entry:  # no run: nothing to attach the entry to
        return
    if not is_down():
        try:
            retrying(apply, MlflowClient(), entry)
            return
        except Exception:  # noqa: BLE001 - any failure to reach the store
            mark_down()
    keep(entry, files or [])


def keep(entry: dict[str, Any], files: list[Path]) -> None:
    """Append `entry` to its run's outbox file; artifacts are copied, as outputs change."""
    folder = outbox_dir() / entry["run_id"]
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        copy = folder / "files" / hashlib.sha256(str(path).encode()).hexdigest()[:16] / path.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
        entry = {**entry, "path": str(copy)}
    with open(folder / "entries.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"uri": without_credentials(mlflow.get_tracking_uri()), **entry})
                + "\n")


def without_credentials(uri: str) -> str:
    """`uri` without a `user:password@` part (the outbox is a plain file on disk)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if not parts.netloc or "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def replay(uri: str | None = None) -> tuple[int, int]:
    """Send every kept entry to its store, oldest first; returns (entries, runs) sent.

    A run's outbox is removed only when all of its entries went through; until then `sent`
    counts those that did, and a later replay skips them.
    """
    sent = runs = 0
    for folder in sorted(outbox_dir().glob("*")) if outbox_dir().is_dir() else []:
        entries = [json.loads(line) for line in
                   (folder / "entries.jsonl").read_text(encoding="utf-8").splitlines() if line]
        done = int((folder / "sent").read_text()) if (folder / "sent").exists() else 0
        for index in range(done, len(entries)):
            entry = entries[index]
            retrying(apply, MlflowClient(uri or entry["uri"]), entry)
            write_text(folder / "sent", str(index + 1))
            sent += 1
        runs += 1
        shutil.rmtree(folder)
    return sent, runs
