"""The stack's checks that need no server: settings, credentials, ports, binaries."""

from __future__ import annotations

import socket
import subprocess

import pytest

from cnnlab.__main__ import main
from cnnlab.core.errors import ServiceError
from cnnlab.services import object_store, postgres, stack, tracking_server
from tests.conftest import ROOT


def test_settings_take_overrides_and_refuse_unknown_keys(tmp_path):
    cfg = stack.load_config([f"state_dir={tmp_path}", "mlflow.port=5123"], root=ROOT)
    assert tracking_server.url(cfg) == "http://127.0.0.1:5123"
    assert cfg.state_dir == str(tmp_path)
    with pytest.raises(ServiceError, match="mlflow.prot"):
        stack.load_config(["mlflow.prot=1"], root=ROOT)


def test_credentials_are_generated_once_private_and_out_of_git(tmp_path):
    first = stack.credentials(tmp_path / "state")
    assert set(first) == {"POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert len(first["POSTGRES_PASSWORD"]) >= 24
    assert (tmp_path / "state" / stack.CREDENTIALS).stat().st_mode & 0o777 == 0o600
    assert stack.credentials(tmp_path / "state") == first
    assert stack.credentials(tmp_path / "other") != first
    default = stack.load_config(root=ROOT).state_dir
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{default}/{stack.CREDENTIALS}"],
                             cwd=ROOT)
    assert ignored.returncode == 0


def test_a_port_in_use_is_one_line_naming_the_port_and_the_fix(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = stack.load_config([f"state_dir={tmp_path}", f"mlflow.port={port}"], root=ROOT)
        with pytest.raises(ServiceError, match=rf"port 127.0.0.1:{port} \(mlflow.port\) is "
                                               r"already in use.*SERVICES=\"mlflow.port=<port>\""):
            tracking_server.start(cfg, tmp_path, stack.credentials(tmp_path))


def test_missing_binaries_name_the_install_command(monkeypatch):
    monkeypatch.setattr(postgres.shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    with pytest.raises(ServiceError, match=r"`initdb` was not found.*make system-deps"):
        postgres.binary("initdb")
    monkeypatch.setattr(object_store.shutil, "which", lambda *a, **k: None)
    with pytest.raises(ServiceError, match=r"`weed` was not found.*make install"):
        object_store._weed()


def test_the_command_line_gives_one_line_and_exit_2_on_bad_settings(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # `python -m cnnlab` from the project
    assert main(["services", "status", "mlflow.prot=1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: services override")
