"""dvc.yaml deps: each stage re-runs when any project code its command runs changes, or any
param it reads, and no other param (a stage's `ctx.root` holds only what it declares)."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import networkx as nx
import pytest
from dvc.dependency.param import ParamsDependency
from dvc.repo import Repo
from dvc.stage import Stage
from omegaconf import OmegaConf

from tests.conftest import ROOT
from tests.stages import load_stage

pytestmark = pytest.mark.unit

SRC, PIPELINES = ROOT / "src", ROOT / "pipelines"


@cache
def pipeline() -> tuple[list[Stage], nx.DiGraph]:
    """The resolved stages (foreach expanded) and DVC's graph, whose edges run from a stage
    to the stages that produce its deps: upstream is `nx.descendants`."""
    index = Repo(str(ROOT)).index
    return list(index.stages), index.graph


def module_file(name: str) -> Path | None:
    """The project file of a dotted module name: `cnnlab.*` in src/, pipelines/ is on sys.path."""
    parts = name.split(".")
    base = (SRC if parts[0] == "cnnlab" else PIPELINES).joinpath(*parts)
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (functions too), as absolute dotted names."""
    package = path.relative_to(SRC).parts[:-1] if SRC in path.parents else ()
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *filter(None, [node.module])])
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}  # `from pkg import sub`
    # importing a.b.c runs a/__init__.py and a/b/__init__.py too
    return {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 2)}


def trivial(path: Path) -> bool:
    """An `__init__.py` holding only a docstring cannot change what a stage does."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(
        isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def files_run(script: Path) -> set[Path]:
    """`script` and every project file it imports, transitively, less trivial `__init__.py`s."""
    seen, todo = set(), [script]
    while todo:
        if (path := todo.pop()) not in seen:
            seen.add(path)
            todo += filter(None, map(module_file, imports(path)))
    return {p for p in seen if not trivial(p)}


def test_stage_deps_cover_the_code_each_stage_runs() -> None:
    stages, graph = pipeline()
    missing = []
    for stage in stages:
        script = re.match(r"python3?\s+(pipelines/\S+\.py)\b", stage.cmd or "")
        assert script, f"{stage.addressing}: no `python pipelines/<x>.py` in `{stage.cmd}`"
        if not (ROOT / script[1]).is_file():
            missing.append(f"  {stage.addressing}: {script[1]} (the script itself does not exist)")
            continue
        upstream = {stage, *nx.descendants(graph, stage)}
        covered = {(ROOT / dep.def_path).resolve() for s in upstream for dep in s.deps}
        uncovered = [str(f.relative_to(ROOT)) for f in sorted(files_run(ROOT / script[1]))
                     if not covered & {f, *f.parents}]
        missing += [f"  {stage.addressing}: {', '.join(uncovered)}"] if uncovered else []
    assert not missing, "stage deps miss code the stage runs (add it to dvc.yaml):\n" + "\n".join(missing)


def test_every_dep_exists_or_is_a_stage_output() -> None:
    stages, _ = pipeline()
    outs = {(ROOT / out.def_path).resolve() for s in stages for out in s.outs}
    holders = outs | {parent for out in outs for parent in out.parents}  # a folder of outputs counts

    def produced(path: Path) -> bool:
        return path in holders or bool(outs & set(path.parents))

    missing = [f"  {s.addressing}: {dep.def_path}" for s in stages for dep in s.deps
               if not (path := (ROOT / dep.def_path).resolve()).exists() and not produced(path)]
    assert not missing, "deps that neither exist nor are a stage's output:\n" + "\n".join(missing)


def script_of(stage: Stage) -> str:
    found = re.match(r"python3?\s+pipelines/(\S+)\.py\b", stage.cmd or "")
    assert found, f"{stage.addressing}: no `python pipelines/<x>.py` in `{stage.cmd}`"
    return found[1]


def test_stage_params_are_exactly_what_the_stage_reads() -> None:
    """dvc.yaml's params of a stage against what its contract reads on params.yaml: its
    section, `paths` and its declared `reads` (e.g. seeds.audio's experiments)."""
    stages, _ = pipeline()
    params = OmegaConf.load(ROOT / "params.yaml")
    config = OmegaConf.to_container(params, resolve=True)
    wrong = []
    for stage in stages:
        cfg = params.copy()
        if run := re.search(r"\brun=(\S+)", stage.cmd or ""):
            cfg.run = run[1]
        _, reads = load_stage(script_of(stage)).params(cfg, config)
        listed = [p for dep in stage.deps if isinstance(dep, ParamsDependency) for p in dep.params]
        if unlisted := [key for key in reads if key not in listed]:
            wrong.append(f"  {stage.addressing} reads {', '.join(unlisted)}: add to its params")
        if unread := [key for key in listed if key not in reads]:
            wrong.append(f"  {stage.addressing} lists {', '.join(unread)}, which it never reads")
    assert not wrong, "dvc.yaml params differ from what the stages read:\n" + "\n".join(wrong)


def test_lock_holds_only_the_stages_of_dvc_yaml() -> None:
    """DVC never drops the lock entry of a removed or renamed stage; a stale one is parsed on
    every `dvc status` and rewritten after every stage of a repro."""
    import yaml

    stages, _ = pipeline()
    locked = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    stale = sorted(set(locked) - {s.addressing for s in stages})
    assert not stale, f"dvc.lock holds stages that dvc.yaml no longer has: {stale}"
