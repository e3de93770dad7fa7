"""The environment a run was made in: the machine and software its numbers depend on.

The same commit and seeds give different last digits on two machines (issue 22: 99.10% and
99.11% for the lecture CNN), so every stage's MLflow run carries this as `cnnlab.env.<key>`
tags (cnnlab.core.tracking.runs.stage_run). Tags, not an artifact: they are searchable, show
on the run page, and cost no file through the outbox.

Every value is a string, so that an environment read back from a run's tags compares equal to
one gathered here: "none" where a thing does not exist (CUDA on a CPU machine), "unknown" where
it could not be read (no /proc/cpuinfo, no git). Gathering is cheap: a few files, torch's
build info, and two `git` calls (a missing git or a folder outside a repository gives
"unknown", never an error). It imports torch only when called, and never MLflow or Lightning.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

TAG_PREFIX = "cnnlab.env."
KEYS = ("python", "torch", "lightning", "cuda", "driver", "gpu", "os", "cpu", "cpu_count",
        "avx2", "avx512", "cpu_capability", "blas", "onednn", "torch_threads", "accelerator",
        "requirements_lock_sha256", "git_commit", "git_dirty")
# differ between two revisions by design; the other keys differ between machines or installs
REVISION_KEYS = ("git_commit", "git_dirty")
# what a pipeline run rewrites itself: DVC's lock and the outputs committed to git (metrics/,
# plots/). They change during `dvc repro`, and would mark every later stage dirty.
WRITTEN_BY_DVC = ("dvc.lock", "metrics", "plots")
LOCK_FILE = "requirements.lock"


def gather(folder: Path | None = None) -> dict[str, str]:
    """This process's environment; git and `requirements.lock` are those of `folder` (default:
    the current directory, where DVC runs a stage, or its temporary copy of the project)."""
    import torch

    from cnnlab.core.devices import accelerator_kind

    folder = Path(folder or Path.cwd())
    cuda = torch.cuda.is_available()
    build = torch.__config__.show()
    cpu, flags = cpu_model_and_flags()
    top, commit = git_top_and_commit(folder)
    lock = (top or folder) / LOCK_FILE
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": _version("lightning"),
        "cuda": (torch.version.cuda or "unknown") if cuda else "none",
        "driver": nvidia_driver() if cuda else "none",
        "gpu": torch.cuda.get_device_name(0) if cuda else "none",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu,
        "cpu_count": os.cpu_count() or "unknown",
        "avx2": "unknown" if flags is None else "avx2" in flags,
        "avx512": "unknown" if flags is None else "avx512f" in flags,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch picked
        "blas": _search(r"BLAS_INFO=([^,\s]+)", build),
        "onednn": _search(r"MKL-DNN (v[\d.]+)", build) if torch.backends.mkldnn.is_available()
        else "none",  # CPU convolutions run on oneDNN
        "torch_threads": torch.get_num_threads(),
        "accelerator": accelerator_kind("auto"),
        "requirements_lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest()
        if lock.is_file() else "none",
        "git_commit": commit or "unknown",
        "git_dirty": git_dirty(top) if top else "unknown",
    }
    return {key: _text(value) for key, value in env.items()}


def differences(a: Mapping[str, str], b: Mapping[str, str],
                ignore: Iterable[str] = REVISION_KEYS) -> list[str]:
    """The keys whose values differ between two environments (a key only one has counts),
    sorted. By default the git keys are left out: two revisions compared differ there by
    design, and what matters is whether the machine or the installed software differ."""
    skipped = set(ignore)
    return sorted(k for k in set(a) | set(b) if k not in skipped and a.get(k) != b.get(k))


def as_tags(env: Mapping[str, str]) -> dict[str, str]:
    return {f"{TAG_PREFIX}{key}": value for key, value in env.items()}


def from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The environment a run's tags hold ({} for a run made before environments were kept)."""
    return {k.removeprefix(TAG_PREFIX): v for k, v in tags.items() if k.startswith(TAG_PREFIX)}


def cpu_model_and_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, set[str] | None]:
    """The CPU's model name and its feature flags from Linux's cpuinfo (x86 `model name` and
    `flags`, ARM `Features`); elsewhere platform's name for it, and None for the flags."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine() or "unknown", None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())  # the first processor's
    model = fields.get("model name") or fields.get("Hardware") or platform.machine() or "unknown"
    flags = fields.get("flags", fields.get("Features"))
    return model, set(flags.split()) if flags is not None else None


def nvidia_driver() -> str:
    """The NVIDIA driver version (Linux's /proc, else NVML when nvidia-ml-py is installed)."""
    with contextlib.suppress(OSError):
        # "NVRM version: NVIDIA UNIX [Open] Kernel Module [for x86_64]  570.86.15  Release ..."
        found = re.search(r"NVRM version:.*?\s(\d+\.\d+(?:\.\d+)?)\s",
                          Path("/proc/driver/nvidia/version").read_text())
        if found:
            return found[1]
    with contextlib.suppress(Exception):  # not installed, or NVML cannot load
        import pynvml

        pynvml.nvmlInit()
        return str(pynvml.nvmlSystemGetDriverVersion())
    return "unknown"


def git_top_and_commit(folder: Path) -> tuple[Path | None, str | None]:
    """The repository's top folder and HEAD's commit, or (None, None) outside one, or without
    git."""
    out = _git(folder, "rev-parse", "--show-toplevel", "HEAD")
    lines = out.splitlines() if out else []
    return (Path(lines[0]), lines[1]) if len(lines) == 2 else (None, None)


def git_dirty(top: Path) -> str:
    """Whether a tracked file differs from HEAD, leaving out what DVC itself writes
    (WRITTEN_BY_DVC); untracked files do not count."""
    out = _git(top, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no",
               "--", ".", *(f":(exclude){p}" for p in WRITTEN_BY_DVC))
    return "unknown" if out is None else _text(bool(out.strip()))


def _git(folder: Path, *args: str) -> str | None:
    """`git -C folder args`'s output, or None when git is missing or fails."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def _search(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    return found[1] if found else "unknown"


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
