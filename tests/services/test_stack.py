"""The shared stack for real, on the server host: auth, a training through the server, and a
DVC round trip through S3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import psycopg
import pytest
from mlflow.tracking import MlflowClient

from cnnlab.services import clients, object_store, postgres, stack, tracking_server
from tests.conftest import ROOT, TINY_TRAINER
from tests.stages import run_stage

DVC = str(Path(sys.executable).parent / "dvc")


def test_a_second_up_reports_and_the_stack_is_locked_down(services):
    lines: list[str] = []
    stack.up(services, say=lines.append)
    assert len(lines) == 3 and all("already up" in line for line in lines)
    state = Path(services.state_dir)
    assert (state / stack.CREDENTIALS).stat().st_mode & 0o777 == 0o600
    assert (state / "objects" / "s3.json").stat().st_mode & 0o777 == 0o600
    assert (state / "mlflow" / "basic_auth.ini").stat().st_mode & 0o777 == 0o600
    assert {p.stat().st_mode & 0o777 for p in (state / "clients").iterdir()} == {0o600}
    secrets = [v.encode() for v in stack.credentials(state).values()]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes()
        except OSError:  # the process ended meanwhile
            continue
        assert not [s for s in secrets if s in argv], f"a secret in the argv of {cmdline}"
    for log in (state / "logs").iterdir():
        assert not [s for s in secrets if s in log.read_bytes()], f"a secret in {log}"
    server_pid = int((state / "postgres" / "data" / "postmaster.pid").read_text().split()[0])
    uid_line = next(line for line in Path(f"/proc/{server_pid}/status").read_text().splitlines()
                    if line.startswith("Uid:"))
    assert int(uid_line.split()[1]) != 0  # PostgreSQL runs unprivileged
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(postgres.uri(services, "wrong-password", "mlflow", driver="postgresql"),
                        connect_timeout=5)


def as_pipeline(services, monkeypatch) -> str:
    """This process logs as the pipeline user, trusting the stack's CA; returns the URI."""
    keys = stack.credentials(Path(services.state_dir))
    for key, value in clients.env(services, keys, "pipeline").items():
        monkeypatch.setenv(key, value)
    uri = tracking_server.url(services)
    mlflow.set_tracking_uri(uri)
    return uri


def test_training_through_the_server_lands_in_postgres_and_the_object_store(
        services, tiny_mnist, tmp_path, monkeypatch):
    uri = as_pipeline(services, monkeypatch)
    shrink = [f"train.mnist_cnn.trainer.{k}={v}" for k, v in TINY_TRAINER.items()]
    result = run_stage("train", "run=mnist_cnn", f"paths.prepared={tiny_mnist.parent}",
                       *(f"paths.{k}={tmp_path / k}" for k in ("models", "metrics", "plots")),
                       *shrink, "train.mnist_cnn.register_model=true")

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test_acc"] == pytest.approx(result.metrics["test_acc"])
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: no keys on clients
    fetched = Path(client.download_artifacts(run.info.run_id, "mnist/mnist_cnn.json", tmp_path))
    assert fetched.read_text() == (tmp_path / "metrics/mnist/mnist_cnn.json").read_text()
    (version,) = client.search_model_versions("name='mnist_cnn'")
    assert version.run_id == run.info.run_id
    model = mlflow.pytorch.load_model(f"models:/mnist_cnn/{version.version}")
    assert sum(p.numel() for p in model.parameters()) == result.metrics["params"]

    keys = stack.credentials(Path(services.state_dir))
    bucket = services.object_store.buckets.artifacts
    objects = object_store.client(services, keys).list_objects_v2(Bucket=bucket)["Contents"]
    assert any(f"{run.info.run_id}/artifacts/mnist/mnist_cnn.json" in o["Key"] for o in objects)
    with psycopg.connect(postgres.uri(services, keys["POSTGRES_PASSWORD"], "mlflow",
                                      driver="postgresql")) as conn:
        (count,) = conn.execute("SELECT count(*) FROM runs WHERE run_uuid = %s",
                                (run.info.run_id,)).fetchone()
    assert count == 1


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def _dvc(repo: Path, *args: str) -> str:
    done = subprocess.run([DVC, *args], cwd=repo, capture_output=True, text=True,
                          env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_dvc_push_then_pull_in_a_fresh_clone_leaves_nothing_to_run(services, tmp_path):
    """The project's remote setup (.dvc/config names it, `up` writes its keys to config.local)
    on a two-stage pipeline; a counter outside the repo proves no stage runs after the pull."""
    origin, clone, runs = tmp_path / "origin", tmp_path / "clone", tmp_path / "runs.log"
    origin.mkdir()
    _git(origin, "init", "-q")
    _dvc(origin, "init", "-q")
    name = services.dvc_remote
    _dvc(origin, "remote", "add", "-d", name, f"s3://{services.object_store.buckets.dvc}")
    (origin / "dvc.yaml").write_text(
        "stages:\n"
        "  make:\n"
        f"    cmd: echo make >> {runs} && mkdir -p data && seq 1 5000 > data/numbers.txt\n"
        "    outs: [data]\n"
        "  total:\n"
        f"    cmd: echo total >> {runs} && mkdir -p models && wc -l data/numbers.txt > models/n\n"
        "    deps: [data]\n"
        "    outs: [models]\n")
    stack.connect_dvc_remote(services, origin)
    _dvc(origin, "repro")
    _git(origin, "add", "-A")
    _git(origin, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline")
    assert "4 files pushed" in _dvc(origin, "push")  # two files and two directory manifests
    assert runs.read_text().split() == ["make", "total"]

    _git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert not (clone / ".dvc" / "config.local").exists()  # keys never travel with git
    assert (origin / ".dvc" / "config.local").stat().st_mode & 0o777 == 0o600
    stack.connect_dvc_remote(services, clone)
    _dvc(clone, "pull")
    assert (clone / "models" / "n").read_text() == (origin / "models" / "n").read_text()
    assert "up to date" in _dvc(clone, "status")
    _dvc(clone, "repro")
    assert runs.read_text().split() == ["make", "total"]  # nothing ran again


KILLED = {"mlflow": lambda state: int((state / "run" / "mlflow.pid").read_text()),
          "object store": lambda state: int((state / "run" / "object_store.pid").read_text()),
          "postgres": lambda state: int(
              (state / "postgres" / "data" / "postmaster.pid").read_text().split()[0])}


@pytest.mark.parametrize("service", list(KILLED))
def test_a_service_killed_mid_training_costs_nothing_once_restarted_and_replayed(
        services, service, tiny_mnist, tmp_path, monkeypatch):
    """kill -9 a service after the first of 3 epochs: the training still ends with its DVC
    outputs; after `up` and a replay the run holds every epoch's metrics exactly once."""
    as_pipeline(services, monkeypatch)
    monkeypatch.setenv("CNNLAB_STATE_DIR", str(tmp_path / "state"))
    cmd = [sys.executable, str(ROOT / "pipelines" / "train.py"), "run=mnist_cnn",
           f"paths.prepared={tiny_mnist.parent}", "train.mnist_cnn.register_model=false",
           "train.mnist_cnn.trainer.accelerator=cpu", "train.mnist_cnn.trainer.threads=1",
           *(f"paths.{k}={tmp_path / k}" for k in ("models", "metrics", "plots")),
           *(f"train.mnist_cnn.trainer.{k}={v}" for k, v in TINY_TRAINER.items()),
           "train.mnist_cnn.trainer.max_epochs=3"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    while not list((tmp_path / "state").glob("resume/*/meta.json")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    pid = KILLED[service](Path(services.state_dir))
    if service == "postgres":
        os.kill(pid, signal.SIGKILL)  # the postmaster; its backends exit when they see it gone
    else:
        os.killpg(pid, signal.SIGKILL)  # the server and its workers
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert (tmp_path / "metrics/mnist/mnist_cnn.json").is_file()

    stack.up(services, say=lambda line: None)
    replay = subprocess.run([sys.executable, "-m", "cnnlab.core.tracking", "replay"], cwd=ROOT,
                            capture_output=True, text=True)
    assert replay.returncode == 0, replay.stderr
    client = MlflowClient(tracking_server.url(services))
    (run,) = client.search_runs([client.get_experiment_by_name("mnist_cnn").experiment_id],
                                order_by=["attributes.start_time DESC"], max_results=1)
    assert run.info.status == "FINISHED"
    for metric in ("train_loss", "val_acc"):
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, metric)) == [
            1, 2, 3]


def test_a_server_that_lets_anonymous_requests_through_is_refused(tmp_path, mlflow_template):
    """What `up` checks after starting MLflow, against a plain `mlflow server` (no auth app):
    one line, and `up` then stops the server rather than run the stack open."""
    from cnnlab.core.errors import ServiceError
    from cnnlab.services import auth
    from tests.servers import TrackingServer

    server = TrackingServer(tmp_path, mlflow_template)
    server.start()
    try:
        with pytest.raises(ServiceError, match=r"^MLflow auth could not be set up: the server "
                                               r"let an anonymous request through \(HTTP 200"):
            auth.ensure_users(server.uri, stack.credentials(tmp_path / "state"), True)
    finally:
        server.stop()
