"""One side of a comparison: the params, metrics, claims, curves and environment behind a name.

A name is the workspace, a git revision, a DVC experiment or an MLflow run id, tried in that
order. A revision or an experiment is read as it was committed: `params.yaml`, `metrics/` and
`plots/` from git (they are `cache: false`, so every commit and experiment carries them), the
claims `reports/<topic>/claims.json` through DVC's own file system, from the local cache. A
run id is read from the MLflow store: its params, metrics, `val_acc` history and tags.

The environment of a revision is the one recorded by the MLflow runs that wrote its training
metrics, found by their `fit_seconds` as the report finds them; a revision whose runs are in
no store has none, and the page says so rather than guessing.
"""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnlab.core import environment
from cnnlab.core.claims import Claim
from cnnlab.core.errors import ConfigError

WORKSPACE = "workspace"
RUN_ID = re.compile(r"[0-9a-f]{32}")
ClaimKey = tuple[str, str]  # (claim, experiment): a claim's identity across revisions


@dataclass
class Side:
    label: str  # what the page calls it: "workspace", "main (f8a1467)", "exp fast_lr (…)"
    params: dict[str, Any]  # dotted keys
    metrics: dict[str, Any]  # "<file>:<dotted key>" -> value, as `dvc exp show` names them
    curves: dict[str, list[dict[str, float]]]  # experiment -> rows of epoch, val_acc
    claims: dict[str, dict[ClaimKey, Claim]]  # topic -> its claims, of the topics that were read
    claims_note: str = ""  # which topics could not be read, and why
    environments: dict[str, dict[str, str]] = field(default_factory=dict)  # an MLflow run's own


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys; lists stay whole (a seed list is one value)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _git(root: Path, *args: str) -> str | None:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def resolve(name: str, root: Path) -> tuple[str, str]:
    """("workspace" | "git" | "mlflow", the commit or run id) of a name, or ConfigError."""
    if name == WORKSPACE:
        return WORKSPACE, ""
    commit = _git(root, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
    if commit:
        return "git", commit
    refs = _git(root, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps") or ""
    found = [line.split()[1] for line in refs.splitlines()
             if line.split()[0].count("/") == 4 and line.split()[0].endswith(f"/{name}")]
    if len(found) == 1:
        return "git", found[0]
    if len(found) > 1:
        raise ConfigError(f"compare: {name!r} names {len(found)} DVC experiments; give its "
                          "commit instead (dvc exp show --sha)")
    if RUN_ID.fullmatch(name):
        return "mlflow", name
    raise ConfigError(f"compare: {name!r} is not a git revision, a DVC experiment or an MLflow "
                      "run id")


def load(name: str, root: Path) -> Side:
    kind, ref = resolve(name, root)
    if kind == "mlflow":
        return _from_run(ref)
    if kind == WORKSPACE:
        side = _from_files(WORKSPACE, _workspace_reader(root), _workspace_list(root))
        side.claims, side.claims_note = _claims(side.params, _workspace_reader(root), WORKSPACE)
    else:
        exp = "exp " if _git(root, "rev-parse", "--verify", "--quiet", name) is None else ""
        label = ref[:7] if ref.startswith(name) else f"{exp}{name} ({ref[:7]})"
        side = _from_files(label, _git_reader(root, ref), _git_list(root, ref))
        side.claims, side.claims_note = _claims(side.params, _dvc_reader(root, ref), label)
    return side


# --- reading files: the workspace, or a commit ------------------------------------------------

Reader = Callable[[str], bytes | None]  # a repository path -> its bytes, None when absent


def _workspace_reader(root: Path) -> Reader:
    def read(path: str) -> bytes | None:
        file = root / path
        return file.read_bytes() if file.is_file() else None
    return read


def _workspace_list(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for top in ("metrics", "plots")
            for p in sorted((root / top).rglob("*")) if p.is_file()]


def _git_reader(root: Path, commit: str) -> Reader:
    def read(path: str) -> bytes | None:
        done = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=root, capture_output=True)
        return done.stdout if done.returncode == 0 else None
    return read


def _git_list(root: Path, commit: str) -> list[str]:
    return (_git(root, "ls-tree", "-r", "--name-only", commit, "--", "metrics", "plots")
            or "").splitlines()


def _dvc_reader(root: Path, commit: str) -> Reader:
    """Files that DVC tracks at `commit`, from the local cache only: a remote that does not
    answer would stall the page, and a missing file is named in the page's notes."""
    from dvc.api import DVCFileSystem

    fs = DVCFileSystem(str(root), rev=commit, config={"core": {"remote": ""}})

    def read(path: str) -> bytes | None:
        try:
            return fs.read_bytes(path)
        except Exception:  # noqa: BLE001 - not in the cache, not at that revision: both absent
            return None
    return read


def _from_files(label: str, read: Reader, files: list[str]) -> Side:
    raw = read("params.yaml")
    if raw is None:
        raise ConfigError(f"compare: {label} has no params.yaml (not a cnnlab revision?)")
    params = flatten(yaml.safe_load(raw) or {})
    metrics: dict[str, Any] = {}
    curves: dict[str, list[dict[str, float]]] = {}
    for path in files:
        if path.startswith("metrics/") and path.endswith(".json"):
            try:
                data = json.loads(read(path) or b"null")
            except ValueError:
                continue  # a half-written file in the workspace: not a metric
            if isinstance(data, Mapping):
                metrics.update({f"{path}:{k}": v for k, v in flatten(data).items()})
        elif path.startswith("plots/") and path.count("/") == 2 and path.endswith(".csv"):
            rows = _curve(read(path) or b"")
            if rows:
                curves[Path(path).stem] = rows
    return Side(label, params, metrics, curves, {})


def _curve(raw: bytes) -> list[dict[str, float]]:
    """A training history's epoch and val_acc rows; [] for any other csv."""
    try:
        rows = list(csv.DictReader(io.StringIO(raw.decode())))
        return [{"epoch": float(r["epoch"]), "val_acc": float(r["val_acc"])} for r in rows
                if r.get("val_acc") not in (None, "")]
    except (KeyError, ValueError, UnicodeDecodeError):
        return []


def _claims(params: Mapping[str, Any], read: Reader, label: str
            ) -> tuple[dict[str, dict[ClaimKey, Claim]], str]:
    """The claims of every topic of the report whose claims file can be read."""
    topics = [key.split(".")[3] for key in params if key.startswith("analysis.report.topics.")]
    claims: dict[str, dict[ClaimKey, Claim]] = {}
    for topic in topics:
        raw = read(f"reports/{topic}/claims.json")
        if raw is not None:
            rows = [Claim(**row) for row in json.loads(raw)]
            claims[topic] = {(c.claim, c.experiment): c for c in rows}
    missing = [t for t in topics if t not in claims]
    note = (f"{label}: no claims of {', '.join(missing)} (stage not run, or its outputs not in "
            "the local DVC cache: `dvc pull` or `dvc exp pull`)") if missing else ""
    return claims, note


def environments(side: Side, names: list[str]) -> dict[str, dict[str, str]]:
    """The environment of the first of `names` (or, none given, of the first training) whose
    run is in the store, found by its metrics file's fit_seconds; {} when none is. An MLflow
    side has its own."""
    if side.environments:
        return side.environments
    from cnnlab.core.tracking.provenance import run_environment
    from cnnlab.core.tracking.store import configure

    seconds = {Path(key.split(":")[0]).stem: value for key, value in side.metrics.items()
               if key.endswith(":fit_seconds") and key.count("/") == 2}
    configure()
    for name in [n for n in names if n in seconds] or list(seconds)[:1]:
        env = run_environment(name, "fit_seconds", seconds[name])
        if env:
            return {name: env}
    return {}


# --- an MLflow run -----------------------------------------------------------------------------

def _from_run(run_id: str) -> Side:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from cnnlab.core.tracking.store import configure

    configure()
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        reason = exc.message.splitlines()[0]
        raise ConfigError(f"compare: MLflow run {run_id} is not in the store ({reason})") from exc
    name = run.info.run_name or run_id[:8]
    history = client.get_metric_history(run_id, "val_acc")
    curves = {name: [{"epoch": float(m.step), "val_acc": m.value} for m in history]} if history else {}
    env = environment.from_tags(run.data.tags)
    return Side(f"run {name} ({run_id[:8]})", dict(run.data.params), dict(run.data.metrics), curves,
                {}, f"run {run_id[:8]}: an MLflow run holds no claims (compare revisions or "
                      "experiments for those)", {name: env} if env else {})
