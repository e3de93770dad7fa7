"""The exposed stack, used from the client host: auth, TLS, S3 keys by role, closed ports.

Runs after test_stack.py (same package stack): the trainings there and here share experiment
`mnist_cnn`, so each test finds its run by what it logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cnnlab.services import clients, object_store, stack, tls, tracking_server
from tests.conftest import ROOT, TINY_TRAINER
from tests.services.conftest import kill

DVC = str(Path(sys.executable).parent / "dvc")
PLAIN = {k: v for k, v in os.environ.items()  # the environment, less any client settings
         if not k.startswith(("MLFLOW_TRACKING_", "AWS_ACCESS", "AWS_SECRET"))}


def on_client(hosts, *argv: str, env: dict[str, str] | None = None, cwd: Path = ROOT
              ) -> subprocess.CompletedProcess:
    """`argv` on the client host, with `env` on top of a plain environment."""
    return subprocess.run(hosts.client_cmd(*argv), cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**PLAIN, "DVC_NO_ANALYTICS": "1", **(env or {})})


def role_env(services, role: str) -> dict[str, str]:
    return clients.env(services, stack.credentials(Path(services.state_dir)), role)


def train_command(tmp_path: Path, data: Path) -> list[str]:
    return [sys.executable, str(ROOT / "pipelines" / "train.py"), "run=mnist_cnn",
            f"paths.prepared={data.parent}", "train.mnist_cnn.register_model=true",
            "train.mnist_cnn.trainer.accelerator=cpu", "train.mnist_cnn.trainer.threads=1",
            *(f"paths.{k}={tmp_path / k}" for k in ("models", "metrics", "plots")),
            *(f"train.mnist_cnn.trainer.{k}={v}" for k, v in TINY_TRAINER.items())]


def latest_run(client: MlflowClient):
    experiment = client.get_experiment_by_name("mnist_cnn").experiment_id
    return client.search_runs([experiment], order_by=["attributes.start_time DESC"],
                              max_results=1)[0]


@pytest.fixture(scope="module")
def trained(services, hosts, tiny_mnist, tmp_path_factory):
    """A training by the pipeline user on the client host, through TLS and auth."""
    out = tmp_path_factory.mktemp("client-training")
    env = {**role_env(services, "pipeline"), "CNNLAB_STATE_DIR": str(out / "state")}
    done = on_client(hosts, *train_command(out, tiny_mnist), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_the_pipeline_trains_from_the_client_host(services, trained, monkeypatch):
    for key, value in role_env(services, "pipeline").items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(tracking_server.url(services))
    run = latest_run(client)
    assert run.info.status == "FINISHED"
    logged = json.loads((trained / "metrics/mnist/mnist_cnn.json").read_text())
    assert run.data.metrics["test_acc"] == pytest.approx(logged["test_acc"])
    assert [len(client.get_metric_history(run.info.run_id, "train_loss"))] == [1]
    (version,) = [v for v in client.search_model_versions("name='mnist_cnn'")
                  if v.run_id == run.info.run_id]
    assert version.status == "READY"


READER = """
import hashlib, json, sys, tempfile
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
client = MlflowClient()
experiment = client.get_experiment_by_name("mnist_cnn").experiment_id
run = client.search_runs([experiment], order_by=["attributes.start_time DESC"])[0]
path = client.download_artifacts(run.info.run_id, "mnist/mnist_cnn.json", tempfile.mkdtemp())
try:
    client.create_run(experiment)
    refused = None
except MlflowException as exc:
    refused = exc.get_http_status_code()
print(json.dumps({"run": run.info.run_id, "test_acc": run.data.metrics["test_acc"],
                  "artifact": hashlib.sha256(open(path, "rb").read()).hexdigest(),
                  "create_run": refused}))
"""


def test_the_reader_reads_runs_and_artifacts_and_cannot_write(services, hosts, trained):
    done = on_client(hosts, sys.executable, "-c", READER, env=role_env(services, "reader"))
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    artifact = (trained / "metrics/mnist/mnist_cnn.json").read_bytes()
    assert seen["artifact"] == hashlib.sha256(artifact).hexdigest()
    assert seen["test_acc"] == pytest.approx(json.loads(artifact)["test_acc"])
    assert seen["create_run"] == 403


def _status(hosts, url: str, ca: Path, user: str | None = None) -> str:
    """The HTTP status of GET `url` from the client host; the password travels on stdin."""
    config = f'user = "{user}"\n' if user else ""
    done = subprocess.run(hosts.client_cmd(
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(ca),
        "-K", "-", url), input=config, capture_output=True, text=True, timeout=60)
    return done.stdout


def test_anonymous_and_wrong_passwords_get_401_from_the_client_host(services, hosts):
    url = f"{tracking_server.url(services)}/api/2.0/mlflow/experiments/search?max_results=1"
    ca = tls.files(services)["ca"]
    reader = role_env(services, "reader")["MLFLOW_TRACKING_PASSWORD"]
    assert _status(hosts, url, ca) == "401"
    assert _status(hosts, url, ca, "reader:not-the-password") == "401"
    assert _status(hosts, url, ca, "nobody:" + reader) == "401"
    assert _status(hosts, url, ca, "reader:" + reader) == "200"


def test_a_client_without_the_ca_fails_in_one_line_naming_the_certificate(
        services, hosts, tiny_mnist, tmp_path):
    env = {k: v for k, v in role_env(services, "pipeline").items()
           if k != "MLFLOW_TRACKING_SERVER_CERT_PATH"}
    done = on_client(hosts, *train_command(tmp_path, tiny_mnist),
                     env={**env, "CNNLAB_STATE_DIR": str(tmp_path / "state")})
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: tracking server {tracking_server.url(services)}: its TLS "
                           "certificate is not trusted (certificate verify failed: ")
    assert "MLFLOW_TRACKING_SERVER_CERT_PATH" in line
    assert not (tmp_path / "models").exists()


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def test_dvc_pull_with_read_only_keys_works_and_push_is_refused(services, hosts, tmp_path):
    origin, clone = tmp_path / "origin", tmp_path / "clone"
    origin.mkdir()
    _git(origin, "init", "-q")
    for args in (["init", "-q"], ["remote", "add", "-d", services.dvc_remote,
                                  f"s3://{services.object_store.buckets.dvc}"]):
        subprocess.run([DVC, *args], cwd=origin, check=True, capture_output=True)
    (origin / "data.txt").write_text("\n".join(map(str, range(3000))))
    stack.connect_dvc_remote(services, origin)  # the pipeline's read-write keys
    for args in (["add", "data.txt"], ["push"]):
        done = subprocess.run([DVC, *args], cwd=origin, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    _git(origin, "add", "-A")
    _git(origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "data")
    _git(tmp_path, "clone", "-q", str(origin), str(clone))

    reader = role_env(services, "reader")  # keys in the environment, never in argv
    for option, value in (("endpointurl", object_store.endpoint(services)),
                          ("ssl_verify", str(tls.files(services)["ca"]))):
        subprocess.run([DVC, "remote", "modify", "--local", services.dvc_remote, option, value],
                       cwd=clone, check=True, capture_output=True)
    pulled = on_client(hosts, DVC, "pull", env=reader, cwd=clone)
    assert pulled.returncode == 0, pulled.stderr
    assert (clone / "data.txt").read_text() == (origin / "data.txt").read_text()
    assert "up to date" in on_client(hosts, DVC, "status", env=reader, cwd=clone).stdout
    (clone / "more.txt").write_text("written by a reader")
    subprocess.run([DVC, "add", "more.txt"], cwd=clone, check=True, capture_output=True)
    pushed = on_client(hosts, DVC, "push", env=reader, cwd=clone)
    assert pushed.returncode != 0
    assert "AccessDenied" in pushed.stderr or "403" in pushed.stderr, pushed.stderr


PROBE = """
import json, socket, ssl, sys
answers = {}
for port in map(int, sys.argv[2:]):
    try:
        sock = socket.create_connection((sys.argv[1], port), timeout=3)
    except OSError as exc:
        answers[port] = type(exc).__name__
        continue
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    try:
        with tls.wrap_socket(sock) as conn:
            conn.sendall(b"PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n")
            conn.recv(1)
        answers[port] = "open"
    except ssl.SSLError as exc:
        answers[port] = "needs a client certificate" if "CERTIFICATE_REQUIRED" in str(exc) \\
            else "open"
    except OSError:  # connected and spoke TLS, then no answer in time
        answers[port] = "open"
print(json.dumps(answers))
"""


def test_postgres_and_the_seaweedfs_internals_do_not_answer_the_client_host(services, hosts):
    """Nothing but MLflow and the S3 gateway listens on the exposed address, except the S3
    gateway's gRPC port (SeaweedFS binds it beside the gateway), which demands the stack's
    internal client certificate."""
    s3_grpc = services.object_store.s3_port + services.object_store.grpc_offset
    internal = [services.postgres.port, *object_store.ports(services).values()]
    exposed = [services.mlflow.port, services.object_store.s3_port]
    internal = [p for p in internal if p not in (*exposed, s3_grpc)]
    done = on_client(hosts, sys.executable, "-c", PROBE, hosts.server,
                     *map(str, [*internal, *exposed, s3_grpc]))
    answers = {int(k): v for k, v in json.loads(done.stdout).items()}
    assert {answers[p] for p in exposed} == {"open"}  # the probe reaches the server host
    assert {answers[p] for p in internal} == {"ConnectionRefusedError"}, answers
    assert answers[s3_grpc] == "needs a client certificate"


def everything(services) -> dict:
    """What the stack holds, as the pipeline sees it: every run with its params, tags, every
    metric point and the sha256 of every artifact; every registered model version."""
    client = MlflowClient(tracking_server.url(services))
    runs = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id]):
            artifacts, folders = {}, [None]
            while folders:
                for item in client.list_artifacts(run.info.run_id, folders.pop()):
                    if item.is_dir:
                        folders.append(item.path)
                    else:
                        local = client.download_artifacts(run.info.run_id, item.path)
                        artifacts[item.path] = hashlib.sha256(Path(local).read_bytes()).hexdigest()
            runs[run.info.run_id] = {
                "experiment": experiment.name, "status": run.info.status,
                "params": run.data.params, "tags": run.data.tags, "artifacts": artifacts,
                "metrics": {key: [(m.step, m.timestamp, m.value)
                                  for m in client.get_metric_history(run.info.run_id, key)]
                            for key in run.data.metrics}}
    versions = sorted((v.name, v.version, v.run_id, v.source, v.status, v.description)
                      for v in client.search_model_versions())
    return {"runs": runs, "versions": versions}


def test_backup_then_restore_into_an_empty_stack_gives_back_every_run_model_and_object(
        services, trained, tmp_path, monkeypatch):
    """Last in the package: it stops the stack, deletes its state and restores it. What the
    earlier tests logged (trainings, registered versions, DVC pushes) is what it compares."""
    from cnnlab.services import backup

    for key, value in role_env(services, "pipeline").items():
        monkeypatch.setenv(key, value)
    before = everything(services)
    assert before["versions"] and any(r["artifacts"] for r in before["runs"].values())
    repo = tmp_path / "origin"
    repo.mkdir()
    _git(repo, "init", "-q")
    for args in (["init", "-q"], ["remote", "add", "-d", services.dvc_remote,
                                  f"s3://{services.object_store.buckets.dvc}"]):
        subprocess.run([DVC, *args], cwd=repo, check=True, capture_output=True)
    (repo / "weights.bin").write_bytes(os.urandom(300_000))
    stack.connect_dvc_remote(services, repo)
    for args in (["add", "weights.bin"], ["push"]):
        assert subprocess.run([DVC, *args], cwd=repo, capture_output=True).returncode == 0
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "weights")

    manifest = backup.backup(services, tmp_path / "backup")
    assert {n.split("/")[1] for n in manifest["files"] if n.startswith("postgres/")} == {
        f"{db}.dump" for db in services.postgres.databases}
    state = Path(services.state_dir)
    kill(services)  # its state goes next: no need to wait for a graceful stop
    for item in state.iterdir():
        if item.is_dir():
            shutil.rmtree(item)
        else:
            item.unlink()
    backup.restore(services, tmp_path / "backup", say=lambda line: None)

    assert everything(services) == before
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repo), str(clone))
    stack.connect_dvc_remote(services, clone)
    assert subprocess.run([DVC, "pull"], cwd=clone, capture_output=True).returncode == 0
    assert (clone / "weights.bin").read_bytes() == (repo / "weights.bin").read_bytes()
    status = subprocess.run([DVC, "status"], cwd=clone, capture_output=True, text=True)
    assert "up to date" in status.stdout
