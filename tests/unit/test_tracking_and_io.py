import pytest

from cnnlab.core import paths
from cnnlab.core.io import atomic_dir, atomic_path, write_json
from cnnlab.core.tracking import runs, store


def test_dvc_temp_copies_log_to_the_original_project(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "proj"
    copy = root / ".dvc" / "tmp" / "exps" / "tmpab12" / "pipelines"
    copy.mkdir(parents=True)
    assert paths.project_root(copy) == root
    assert paths.tracking_uri(copy) == f"sqlite:///{root / 'mlflow.db'}"
    assert paths.tracking_uri(root / ".dvc").startswith("sqlite:////")


def test_environment_overrides_the_tracking_uri(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert paths.tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_flatten_gives_dotted_params():
    assert runs.flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {
        "a.b": 1, "a.c.d": [1, 2], "e": None}


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.json"
    write_json(path, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text().strip().endswith("}") and '"v": 1' in path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "out.json"]  # + the store


def test_failed_directory_write_keeps_the_old_directory(tmp_path):
    out = tmp_path / "prepared"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("new")
        raise RuntimeError("crash")
    assert (out / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "prepared"]  # + the store
    with atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("replaced")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]


def test_artifacts_live_beside_the_sqlite_database(tmp_path, monkeypatch, isolated_mlflow):
    monkeypatch.chdir(tmp_path)
    with runs.stage_run("exp_a", "r") as run:
        runs.mlflow.log_text("hello", "note.txt")
    db_dir = tmp_path  # isolated_mlflow puts mlflow.db in tmp_path
    assert run.info.artifact_uri.startswith((db_dir / "mlartifacts" / "exp_a").as_uri())
    assert (db_dir / "mlartifacts" / "exp_a").is_dir()
    assert not (tmp_path / "mlruns").exists()
    assert store.artifact_location("http://127.0.0.1:5000", "x") is None


def test_a_run_that_loses_the_race_to_create_its_experiment_joins_the_winners(
        tmp_path, monkeypatch, isolated_mlflow):
    """Two jobs start at once on a fresh store: both find no experiment, one creates it first."""
    winner = runs.mlflow.create_experiment("exp_b")
    looked = []

    def missing_the_first_time(name):
        looked.append(name)
        return None if len(looked) == 1 else runs.mlflow.get_experiment(winner)

    monkeypatch.setattr(runs.mlflow, "get_experiment_by_name", missing_the_first_time)
    monkeypatch.chdir(tmp_path)
    with runs.stage_run("exp_b", "r") as run:
        pass
    assert run.info.experiment_id == winner and looked == ["exp_b", "exp_b"]


def test_jobs_of_a_sweep_that_start_at_once_on_two_hosts_keep_one_parent(
        tmp_path, monkeypatch, isolated_mlflow):
    """Another host's job has just created the sweep's parent, after this job looked for one."""
    experiment = runs.mlflow.create_experiment("exp_c")
    client = runs.MlflowClient()
    other = client.create_run(experiment, tags={runs.SWEEP_TAG: "s1", "cnnlab.role": "sweep"})
    search = runs.MlflowClient.search_runs
    looks = []

    def not_there_at_first(self, *args, **kwargs):
        looks.append(args)
        return [] if len(looks) == 1 else search(self, *args, **kwargs)

    monkeypatch.setattr(runs.MlflowClient, "search_runs", not_there_at_first)
    monkeypatch.chdir(tmp_path)
    with runs.stage_run("exp_c", "job 0", sweep_id="s1") as run:
        pass
    monkeypatch.setattr(runs.MlflowClient, "search_runs", search)
    assert run.data.tags[runs.PARENT_TAG] == other.info.run_id
    parents = client.search_runs([experiment], "tags.`cnnlab.role` = 'sweep'",
                                 run_view_type=runs.mlflow.entities.ViewType.ALL)
    assert sorted(p.info.lifecycle_stage for p in parents) == ["active", "deleted"]


def test_a_run_of_another_host_is_reaped_only_when_slurm_says_its_job_ended(
        tmp_path, monkeypatch, isolated_mlflow):
    """A host cannot ask another host's process; without SLURM to ask, such a run is left."""
    experiment = runs.mlflow.create_experiment("exp_d")
    client = runs.MlflowClient()
    tags = {"cnnlab.stage": "s", "cnnlab.host": "another-node", "cnnlab.pid": "1"}
    left = client.create_run(experiment, tags={**tags, runs.JOB_TAG: "77"})
    monkeypatch.delenv("SLURM_CONF", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no squeue: SLURM cannot say
    runs._reap_orphans(experiment, "s", current="none")
    assert client.get_run(left.info.run_id).info.status == "RUNNING"
    (tmp_path / "squeue").write_text("#!/bin/sh\necho FAILED\n")  # SLURM's word: it ended
    (tmp_path / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    runs._reap_orphans(experiment, "s", current="none")
    reaped = client.get_run(left.info.run_id)
    assert (reaped.info.status, reaped.data.tags["cnnlab.ended"]) == ("KILLED", "SLURM job 77 ended")


def test_saved_tensors_are_byte_identical_across_writes(tmp_path):
    import torch

    from cnnlab.core.io import save_torch

    save_torch(tmp_path / "a.pt", {"x": torch.arange(5)})
    save_torch(tmp_path / "b.pt", {"x": torch.arange(5)})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_system_metrics_are_dropped_not_queued_when_the_store_goes_down(monkeypatch):
    """A stage that ends with the store down stops the sampler at once (its finish() would
    wait on the dead store) and sends nothing; the outbox ends the run once replayed."""
    import json
    import threading
    import time

    from mlflow.tracking import MlflowClient

    from cnnlab.core.tracking import outbox

    monkeypatch.setattr(outbox, "_down_until", 0.0)  # restored after the test
    client = MlflowClient()
    with runs.stage_run("exp_a", "r", system_metrics_interval=0.05) as run:
        deadline = time.monotonic() + 20
        while "system/cpu_utilization_percentage" not in client.get_run(
                run.info.run_id).data.metrics:
            assert time.monotonic() < deadline, "no system metrics within 20 s"
            time.sleep(0.05)
        outbox.mark_down()
    for sampler in [t for t in threading.enumerate() if t.name == "SystemMetricsMonitor"]:
        sampler.join(timeout=10)  # it wakes at once, sees the stop, and ends without sending
        assert not sampler.is_alive()
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # its end is in the outbox
    kept = [json.loads(line) for line in
            (paths.outbox_dir() / run.info.run_id / "entries.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in kept] == ["end"]  # no system metrics queued
    monkeypatch.setattr(outbox, "_down_until", 0.0)
    assert outbox.replay() == (1, 1)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_a_replay_that_stops_after_k_of_n_entries_sends_nothing_twice(monkeypatch):
    """The store fails after k entries; the next replay starts after the last one sent."""
    from mlflow.tracking import MlflowClient

    from cnnlab.core.tracking import outbox

    with runs.stage_run("exp_replay", "r") as run:
        run_id = run.info.run_id
    for step in range(10):  # what an outage kept
        outbox.keep({"kind": "metrics", "run_id": run_id, "metrics": {"loss": 1 / (step + 1)},
                     "step": step, "timestamp": 1_000 + step}, [])
    real, sent = outbox.apply, []

    def fails_after_four(client, entry):
        if len(sent) == 4:
            raise ConnectionError("the store went down")
        real(client, entry)
        sent.append(entry["step"])

    monkeypatch.setattr(outbox, "apply", fails_after_four)
    with pytest.raises(ConnectionError):
        outbox.replay()
    monkeypatch.setattr(outbox, "apply", real)
    assert outbox.replay() == (6, 1)
    history = MlflowClient().get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(10))  # each point exactly once
    assert not (paths.outbox_dir() / run_id).exists()


def test_the_outbox_and_the_locks_keep_no_credentials_and_nothing_in_tmp(monkeypatch):
    import mlflow

    from cnnlab.core.tracking import outbox

    assert outbox.without_credentials("https://pipeline:s3cret@10.0.0.5:5000/x") == \
        "https://10.0.0.5:5000/x"
    assert outbox.without_credentials("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri("https://pipeline:s3cret@127.0.0.1:9")
    try:
        outbox.keep({"kind": "end", "run_id": "r0", "status": "FINISHED"}, [])
    finally:
        mlflow.set_tracking_uri(previous)
    kept = (paths.outbox_dir() / "r0" / "entries.jsonl").read_text()
    assert "s3cret" not in kept and "https://127.0.0.1:9" in kept
    assert store.lock_path("https://10.0.0.5:5000").is_relative_to(paths.state_dir())
