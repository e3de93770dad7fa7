"""Real servers that tests start and stop themselves."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from cnnlab.services.processes import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TrackingServer:
    """A plain `mlflow server` over SQLite on a free port, started and stopped by the test;
    its store starts as a copy of `store` (an empty, migrated one) when given."""

    def __init__(self, folder: Path, store: Path | None = None) -> None:
        self.folder, self.port = folder, free_port()
        if store is not None and not (folder / "server.db").exists():
            shutil.copyfile(store, folder / "server.db")
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.folder / "server.log", "ab") as log:  # named if it fails to start
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
                 "--port", str(self.port), "--workers", "1",
                 "--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}",
                 "--artifacts-destination", str(self.folder / "artifacts")],
                cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._answers, "mlflow server", 120, self.folder / "server.log", self.proc)

    def _answers(self) -> bool:
        import requests

        try:
            return requests.get(f"{self.uri}/health", timeout=1).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=60)
