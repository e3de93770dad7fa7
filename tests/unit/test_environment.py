"""The environment a run records: every key, the lock file's hash, git's commit and dirty flag,
the CPU's flags, and the comparison of two environments."""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from cnnlab.core import environment
from tests.conftest import ROOT

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git repository with code, a lock file and what DVC writes, all committed."""
    repo = tmp_path / "repo"
    for name, text in {"train.py": "lr = 1\n", "requirements.lock": "torch==2.9.1\n",
                       "dvc.lock": "stages: {}\n", "metrics/train.json": "{}\n"}.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def test_this_process_has_every_key_as_text():
    import torch

    env = environment.gather(ROOT)
    assert list(env) == list(environment.KEYS)
    assert all(isinstance(v, str) and v for v in env.values())
    assert env["python"] == platform.python_version() and env["torch"] == torch.__version__
    assert env["requirements_lock_sha256"] == hashlib.sha256(
        (ROOT / "requirements.lock").read_bytes()).hexdigest()
    assert env["torch_threads"] == str(torch.get_num_threads())
    assert env["avx2"] in ("true", "false", "unknown")
    if not torch.cuda.is_available():
        assert (env["cuda"], env["driver"], env["gpu"]) == ("none", "none", "none")


@needs_git
def test_git_commit_and_a_dirty_flag_that_only_tracked_inputs_flip(repo):
    env = environment.gather(repo)
    assert env["git_commit"] == git(repo, "rev-parse", "HEAD")
    assert env["requirements_lock_sha256"] == hashlib.sha256(b"torch==2.9.1\n").hexdigest()
    assert env["git_dirty"] == "false"
    (repo / "dvc.lock").write_text("stages: {train: {}}\n")  # what a repro writes itself
    (repo / "metrics" / "train.json").write_text('{"acc": 1}\n')
    (repo / "notes.txt").write_text("untracked\n")
    assert environment.gather(repo)["git_dirty"] == "false"
    (repo / "train.py").write_text("lr = 2\n")
    assert environment.gather(repo)["git_dirty"] == "true"
    assert environment.gather(repo / "metrics")["git_dirty"] == "true"  # from a subfolder too


def test_outside_a_repository_or_without_git_the_git_keys_are_unknown(tmp_path, monkeypatch):
    assert (environment.gather(tmp_path)["git_commit"],
            environment.gather(tmp_path)["git_dirty"]) == ("unknown", "unknown")
    assert environment.gather(tmp_path)["requirements_lock_sha256"] == "none"
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    env = environment.gather(ROOT)
    assert (env["git_commit"], env["git_dirty"]) == ("unknown", "unknown")


def test_cpu_flags_from_cpuinfo_and_a_fallback_without_it(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n"
                   "\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma\n")
    model, flags = environment.cpu_model_and_flags(x86)
    assert model == "AMD EPYC 7B13" and {"avx2"} <= flags and "avx512f" not in flags
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd sve\n")
    assert environment.cpu_model_and_flags(arm)[1] == {"fp", "asimd", "sve"}
    model, flags = environment.cpu_model_and_flags(tmp_path / "absent")
    assert model and flags is None


def test_differences_names_the_keys_that_differ_and_leaves_the_revision_out():
    a = {"cpu": "AMD EPYC", "torch": "2.9.1", "torch_threads": "2", "git_commit": "abc",
         "git_dirty": "false"}
    b = {**a, "cpu": "Intel Xeon", "torch_threads": "16", "git_commit": "def"}
    assert environment.differences(a, a) == []
    assert environment.differences(a, b) == ["cpu", "torch_threads"]
    assert environment.differences(a, b, ignore=()) == ["cpu", "git_commit", "torch_threads"]
    assert environment.differences(a, {**a, "blas": "mkl"}) == ["blas"]  # one side only


def test_tags_round_trip_and_other_tags_are_left_out():
    env = {"cpu": "AMD EPYC", "avx2": "true"}
    tags = environment.as_tags(env)
    assert tags == {"cnnlab.env.cpu": "AMD EPYC", "cnnlab.env.avx2": "true"}
    assert environment.from_tags({**tags, "cnnlab.stage": "report"}) == env
