"""The stack's checks that need no server: settings, credentials, ports, binaries."""

from __future__ import annotations

import socket
import subprocess

import pytest

from cnnlab.__main__ import main
from cnnlab.core.errors import ServiceError
from cnnlab.services import clients, object_store, postgres, stack, tls, tracking_server
from tests.conftest import ROOT


def test_settings_take_overrides_and_refuse_unknown_keys(tmp_path):
    cfg = stack.load_config([f"state_dir={tmp_path}", "mlflow.port=5123"], root=ROOT)
    assert tracking_server.url(cfg) == "http://127.0.0.1:5123"
    assert cfg.state_dir == str(tmp_path)
    with pytest.raises(ServiceError, match="mlflow.prot"):
        stack.load_config(["mlflow.prot=1"], root=ROOT)


def test_credentials_are_generated_once_private_and_out_of_git(tmp_path):
    first = stack.credentials(tmp_path / "state")
    assert set(first) == set(stack.SECRETS)
    assert {"POSTGRES_PASSWORD", "MLFLOW_READER_PASSWORD", "READER_AWS_SECRET_ACCESS_KEY"} <= \
        set(first)
    assert min(len(v) for k, v in first.items() if "ACCESS_KEY_ID" not in k) >= 24
    assert len(set(first.values())) == len(first)  # no secret reused
    assert (tmp_path / "state" / stack.CREDENTIALS).stat().st_mode & 0o777 == 0o600
    assert stack.credentials(tmp_path / "state") == first
    assert stack.credentials(tmp_path / "other") != first
    older = tmp_path / "older"  # a state folder from before a secret was added: it is made
    older.mkdir()
    (older / stack.CREDENTIALS).write_text("POSTGRES_PASSWORD=kept\n")
    assert stack.credentials(older)["POSTGRES_PASSWORD"] == "kept"
    assert set(stack.credentials(older)) == set(stack.SECRETS)
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


def test_the_generated_certificate_names_the_exposed_address_and_keys_are_private(tmp_path):
    from cryptography import x509

    cfg = stack.load_config([f"state_dir={tmp_path}", "expose=10.66.0.9"], root=ROOT)
    files = tls.ensure(cfg)
    cert = x509.load_pem_x509_certificate(files["cert"].read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in names] == ["10.66.0.9"]
    assert cert.issuer == x509.load_pem_x509_certificate(files["ca"].read_bytes()).subject
    assert {files[k].stat().st_mode & 0o777 for k in ("key", "ca_key")} == {0o600}
    assert tracking_server.url(cfg) == f"https://10.66.0.9:{cfg.mlflow.port}"
    moved = stack.load_config([f"state_dir={tmp_path}", "expose=10.66.0.10"], root=ROOT)
    assert tls.ensure(moved)["ca"].read_bytes() == files["ca"].read_bytes()  # the CA stays
    again = x509.load_pem_x509_certificate(tls.ensure(moved)["cert"].read_bytes())
    assert "10.66.0.10" in str(again.extensions)


def test_a_site_certificate_that_is_not_there_is_one_line(tmp_path):
    cfg = stack.load_config([f"state_dir={tmp_path}", "expose=10.66.0.9",
                             f"tls.cert={tmp_path}/site.pem", f"tls.key={tmp_path}/site.key"],
                            root=ROOT)
    with pytest.raises(ServiceError, match=r"tls.cert \(.*site.pem\): not a file"):
        tls.files(cfg)


def test_dvc_keys_go_to_a_private_config_local_that_keeps_other_settings(tmp_path):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config.local").write_text("[core]\n    autostage = true\n")
    clients.write_dvc_remote(tmp_path, "team", {"url": "s3://b", "secret_access_key": "k1"})
    clients.write_dvc_remote(tmp_path, "team", {"secret_access_key": "k2"})
    path = tmp_path / ".dvc" / "config.local"
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert "autostage = true" in text and "url = s3://b" in text
    assert "k2" in text and "k1" not in text
