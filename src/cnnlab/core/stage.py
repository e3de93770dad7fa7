"""The stage contract. A stage declares its config schema and returns its result; this module
does everything else, once, for every stage:

- composes the config (DVC: `--config-dir . --config-name params`; by hand: `conf/`),
  checks the stage's section against its schema before any work (a wrong type, an unknown or
  a missing key is a ConfigError naming the key);
- stages every output in a temporary sibling and publishes it only when the stage succeeds;
- writes the stage's metrics (`metrics/<name>.json`) and claims (`reports/<name>/claims.json`);
- holds one MLflow run around the stage and logs its config, metrics and outputs to it, with
  the run's environment and system metrics every `tracking.system_metrics_interval` seconds;
- prints a CnnlabError, or an override Hydra cannot compose, as one line and exits with code 2.

A stage script is then:

    @stage("classes", section="analysis.classes", schema=ClassesConfig)
    def main(cfg: dict, ctx: StageContext) -> StageResult:
        ...science, writing into ctx.out_dir(ctx.paths.reports / "classes")...
        return StageResult(metrics, claims)

`run=<name>` picks the entry of a section shared by several stages (`train.{run}`,
`analysis.{run}`), as DVC's `foreach` stages pass it. In a Hydra multirun, every output path
moves under the job's own folder (DVC's outputs are never overwritten), the jobs' MLflow
runs share one parent run, and jobs that a launcher runs side by side split the CPU cores.
In a search (`hydra.sweeper.objective` set, cnnlab.search), a job returns that metric to the
sweeper, and a job that fails is a failed trial: the study goes on.
Under DDP every rank runs the stage's science; only rank 0 writes outputs and tracks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from cnnlab.core import progress
from cnnlab.core.claims import Claim, write_claims
from cnnlab.core.devices import is_rank_zero
from cnnlab.core.errors import CnnlabError, ConfigError, DataError, StageInterrupted
from cnnlab.core.io import replace_dir, temp_dir_beside, temp_file_beside, write_json
from cnnlab.core.paths import Paths

OUTPUT_PATHS = ("models", "metrics", "plots", "reports")  # moved under a multirun job's folder
RUN_NAME_MAX = 250  # the column MLflow's SQL stores (PostgreSQL) hold; SQLite never checks


@dataclass
class TrackingConfig:
    """`tracking` (values in conf/config.yaml): how the contract fills a stage's MLflow run.
    No stage's params: no output depends on it, so a change reruns nothing."""

    system_metrics_interval: float  # seconds between system metrics samples; 0: none


@dataclass
class StageResult:
    """What a stage hands back: numbers for `metrics/<name>.json` and MLflow, and claims."""

    metrics: Mapping[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # printed, one line each
    metrics_file: Path | None = None  # default: <paths.metrics>/<name>.json
    figures: list[Path] = field(default_factory=list)  # not outputs: for the dashboard only


@dataclass
class StageContext:
    """What the contract gives a stage besides its own config."""

    name: str
    paths: Paths
    root: dict[str, Any]  # the other sections the stage declared it reads (`reads`), and no more
    in_sweep: bool = False  # a job of a Hydra multirun
    _staged: dict[Path, Path] = field(default_factory=dict)  # final path -> temporary path
    _made: list[Path] = field(default_factory=list)  # folders made for staging, removed on failure

    def _stage(self, final: Path, make: Callable[[Path], Path]) -> Path:
        if final not in self._staged:
            self._made += [d for d in (final.parent, *final.parent.parents) if not d.exists()]
            try:
                for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a killed run
                    if stale.is_dir():
                        shutil.rmtree(stale)
                    else:
                        stale.unlink(missing_ok=True)
                self._staged[final] = make(final)
            except OSError as exc:
                raise DataError(f"{final}: cannot write this output ({exc.strerror or exc})"
                                ) from None
        return self._staged[final]

    def out_dir(self, final: str | Path) -> Path:
        """A fresh folder to fill; it replaces `final` when the stage succeeds."""
        return self._stage(Path(final), temp_dir_beside)

    def out_file(self, final: str | Path) -> Path:
        """A temporary path to write; it replaces `final` when the stage succeeds."""
        return self._stage(Path(final), temp_file_beside)

    def publish(self) -> list[Path]:
        """Move every staged output into place; returns the published files."""
        files = []
        for final, tmp in self._staged.items():
            if tmp.is_dir():
                replace_dir(tmp, final)
                files += sorted(p for p in final.rglob("*") if p.is_file())
            else:
                os.replace(tmp, final)
                files.append(final)
        self._staged.clear()
        self._made.clear()
        return files

    def discard(self) -> None:
        for tmp in self._staged.values():
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        self._staged.clear()
        for folder in self._made:  # deepest first: each was missing with all below it
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._made.clear()


def validate(section: Any, schema: type, where: str) -> dict[str, Any]:
    """`section` checked against dataclass `schema`: plain, resolved dicts and lists.

    The schema holds types only; the values (and so every default) live in `conf/`.
    """
    values = OmegaConf.to_container(section, resolve=True) if OmegaConf.is_config(section) \
        else section
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, got {values!r}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), values)
        missing = sorted(OmegaConf.missing_keys(merged))
        if missing:
            raise ConfigError(f"{', '.join(f'{where}.{key}' for key in missing)}: missing "
                              "(every key has its value in conf/)")
        return OmegaConf.to_container(merged, resolve=True)
    except MissingMandatoryValue as exc:
        raise ConfigError(f"{where}.{exc.full_key}: missing value") from None
    except OmegaConfBaseException as exc:
        reason = str(exc).splitlines()[0]
        key = f"{where}.{exc.full_key}" if getattr(exc, "full_key", None) else where
        raise ConfigError(f"{key}: {reason}") from None


def select(cfg: DictConfig, dotted: str) -> Any:
    node = OmegaConf.select(cfg, dotted, throw_on_missing=False)
    if node is None:
        parent, _, key = dotted.rpartition(".")
        choices = OmegaConf.select(cfg, parent) if parent else cfg
        known = sorted(choices) if isinstance(choices, Mapping) else []
        raise ConfigError(f"{dotted}: no such entry in the config (entries of {parent}: {known})")
    return node


def only(config: Mapping[str, Any], keys: list[str]) -> dict[str, Any]:
    """The parts of `config` at the dotted `keys`, nested as in `config`: what a stage may read
    besides its own section, so that reading an undeclared section fails in every test."""
    picked: dict[str, Any] = {}
    for key in keys:
        *parents, last = key.split(".")
        source, target = config, picked
        for part in parents:
            source, target = source.get(part, {}), target.setdefault(part, {})
        if last in source:  # a missing entry is the stage's own error to name
            target[last] = source[last]
    return picked


def _paths(cfg: DictConfig, job_dir: Path | None) -> Paths:
    paths = {k: Path(v) for k, v in validate(cfg.paths, Paths, "paths").items()}
    if job_dir is not None:  # a multirun job keeps its outputs apart from DVC's
        paths.update({k: job_dir / k for k in OUTPUT_PATHS})
    return Paths(**paths)


@dataclass(frozen=True)
class SweepJob:
    """A job of a Hydra multirun."""

    output_dir: Path  # the job's own folder: every output path moves under it
    sweep_id: str  # groups the jobs' MLflow runs under one parent
    overrides: str  # the job's overrides, for its run name
    parallel_jobs: int  # jobs the launcher runs at once on this machine
    num: int  # the job's number in the sweep (a search's trial number)


def _sweep_job() -> SweepJob | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    return SweepJob(Path(hc.runtime.output_dir), Path(hc.sweep.dir).name, hc.job.override_dirname,
                    int(OmegaConf.select(hc, "launcher.n_jobs", default=1) or 1), int(hc.job.num))


def sweep_objective() -> str | None:
    """The metric a search optimises (`hydra.sweeper.objective`), in a job of a search."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return OmegaConf.select(HydraConfig.get(), "sweeper.objective", default=None)


def objective_value(result: StageResult, objective: str) -> float:
    """What a search job hands its sweeper: the stage's metric named `objective`."""
    from cnnlab.core.tracking.runs import numeric

    metrics = numeric(result.metrics)
    if objective not in metrics:
        raise ConfigError(f"hydra.sweeper.objective={objective}: not a metric of this stage "
                          f"(its metrics: {sorted(metrics)})")
    return metrics[objective]


def _share_cores(parallel_jobs: int) -> None:
    """Jobs that run side by side split the cores, so their torch threads do not fight."""
    if parallel_jobs > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // parallel_jobs))


@dataclass(frozen=True)
class Stage:
    """A declared stage: `stage()` runs it from the command line, `.run(cfg)` in process."""

    body: Callable[[dict[str, Any], StageContext], StageResult]
    name: str  # may hold "{run}"
    section: str  # dotted key of the stage's config; may hold "{run}"
    schema: type
    experiment: str  # the MLflow experiment; may hold "{run}"
    continues: Callable[[dict[str, Any], StageContext], str | None] | None = None
    reads: Callable[[dict[str, Any], dict[str, Any]], list[str]] | None = None

    def params(self, cfg: DictConfig, config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The stage's own section, validated, and every params key it reads: its section,
        `paths` and what `reads` names (from `config`, `cfg` resolved). dvc.yaml lists exactly
        these (tests/unit/test_dvc_deps.py)."""
        section = self.section.format(run=str(cfg.get("run", "")))
        own = validate(select(cfg, section), self.schema, section)
        return own, [section, "paths", *(self.reads(own, config) if self.reads else [])]

    def run(self, cfg: DictConfig) -> StageResult:
        """Validate, run, publish, track: the whole contract on a composed config."""
        entry = str(cfg.get("run", ""))
        fill = functools.partial(str.format, run=entry)
        name = fill(self.name)
        config = OmegaConf.to_container(cfg, resolve=True)
        own, keys = self.params(cfg, config)
        progress.set_mode(cfg.get("progress", "auto"))
        interval = validate(select(cfg, "tracking"), TrackingConfig, "tracking")[
            "system_metrics_interval"]
        if interval < 0:
            raise ConfigError(f"tracking.system_metrics_interval={interval}: seconds between "
                              "samples, or 0 for none")
        job = _sweep_job()
        ctx = StageContext(name, _paths(cfg, job and job.output_dir), only(config, keys[2:]),
                           in_sweep=job is not None)
        if job:
            _share_cores(job.parallel_jobs)
        if not is_rank_zero():  # a DDP worker: it computes with rank 0, which alone writes
            try:
                return self.body(own, ctx)
            finally:
                ctx.discard()
        from cnnlab.core.tracking import runs as tracking  # MLflow: only in a process that logs

        run_name = (f"{name} {job.overrides}" if job and job.overrides else name)[:RUN_NAME_MAX]
        previous = self.continues(own, ctx) if self.continues else None
        try:
            tags = {"cnnlab.stage": name, **({"cnnlab.job": str(job.num)} if job else {})}
            with (stop_on_signals() as caught,
                  tracking.stage_run(fill(self.experiment), run_name, tags, job and job.sweep_id,
                                     continue_run=previous, system_metrics_interval=interval)):
                tracking.log_params(own)
                result = self.body(own, ctx)
                if caught:  # a signal whose exception a GC callback swallowed ("Exception ignored")
                    raise StageInterrupted(caught[0])
                self._write_results(ctx, result)
                files = ctx.publish()
                tracking.log_metrics(tracking.numeric(result.metrics))
                tracking.log_files(files)
                for figure in result.figures:
                    tracking.log_images([figure], f"figures/{figure.parent.name}")
        finally:
            ctx.discard()
        for line in result.summary:
            print(line)
        return result

    @staticmethod
    def _write_results(ctx: StageContext, result: StageResult) -> None:
        if result.claims:
            write_claims(ctx.out_dir(ctx.paths.reports / ctx.name) / "claims.json", result.claims)
        if result.metrics:
            final = result.metrics_file or ctx.paths.metrics / f"{ctx.name}.json"
            write_json(ctx.out_file(final), dict(result.metrics))

    def __call__(self) -> None:
        """The command-line entry point: a Hydra app with one-line errors (exit code 2)."""
        import hydra
        from hydra.errors import CompactHydraException

        sys.argv = quiet_single_run(sys.argv)
        with hydra_raises() as composed:

            def task(cfg: DictConfig) -> float | None:
                composed()  # from here on Hydra reports errors as it always does
                objective = sweep_objective()
                try:
                    result = self.run(cfg)
                    return objective_value(result, objective) if objective else None
                except CnnlabError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    if objective:  # a failed trial of a search: its sweeper marks it, the study goes on
                        raise
                    sys.exit(2)
                except StageInterrupted as stop:
                    print(f"stopped by signal {stop.signum}: outputs untouched, run marked KILLED",
                          file=sys.stderr)
                    sys.exit(128 + stop.signum)

            try:
                hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(task)()
            except CompactHydraException as exc:  # a bad override: no config to run the stage on
                print(f"error: {override_error(exc, sys.argv)}", file=sys.stderr)
                sys.exit(2)


@contextlib.contextmanager
def hydra_raises() -> Iterator[Callable[[], None]]:
    """HYDRA_FULL_ERROR set, so that Hydra raises what it cannot compose instead of printing
    it over several lines and exiting 1; yields the call that puts the variable back, which
    the task makes first, so that errors after composition print as Hydra prints them."""
    previous = os.environ.get("HYDRA_FULL_ERROR")

    def restore() -> None:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous

    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield restore
    finally:
        restore()


def override_error(exc: Exception, argv: list[str]) -> str:
    """Hydra's error as `<override>: <why>` on one line, naming the command-line override the
    message is about (every override when it names none)."""
    from hydra._internal.utils import get_args_parser

    overrides = [o for o in get_args_parser().parse_known_args(argv[1:])[0].overrides
                 if o not in SINGLE_RUN]
    lines = str(exc).split("Config search path:")[0].splitlines()  # the path: Hydra's own
    why = [line.strip() for line in lines if line.strip()]
    if isinstance(exc.__cause__, OmegaConfBaseException):  # e.g. "Key 'lrr' is not in struct"
        why.insert(1, f"({str(exc.__cause__).splitlines()[0]})")
    named = getattr(exc, "override", None) or next(
        (o for o in sorted(overrides, key=len, reverse=True)
         if f"'{o.split('=')[0].lstrip('+~')}" in str(exc)), None)
    return f"{named or ' '.join(overrides) or 'the config'}: {' '.join(why)}"


SINGLE_RUN = ("hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=none",
              "hydra/hydra_logging=none")


def quiet_single_run(argv: list[str]) -> list[str]:
    """`argv` of a single run, with the overrides that keep Hydra from writing its own
    outputs/<date> folders; options first and overrides last, as Hydra's parser wants (and
    as Lightning's DDP launcher expects when it appends its own)."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv[1:])
    if args.multirun:
        return argv
    rest = list(argv[1:])
    for override in args.overrides:
        rest.remove(override)
    return [argv[0], *rest, *args.overrides, *(o for o in SINGLE_RUN if o not in argv)]


def conf_dir() -> Path:
    """`conf/` of the project whose `pipelines/<stage>.py` runs (DVC passes its own)."""
    script_root = Path(sys.argv[0]).resolve().parent.parent
    for candidate in (script_root, Path.cwd(), *Path.cwd().parents):
        if (candidate / "conf" / "config.yaml").is_file():
            return candidate / "conf"
    return script_root / "conf"


@contextlib.contextmanager
def stop_on_signals() -> Iterator[list[int]]:
    """SIGINT and SIGTERM raise StageInterrupted, which unwinds the stage cleanly; yields the
    signals caught, for a check after work in which the exception may have been swallowed."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def interrupt(signum: int, frame: object) -> None:
        caught.append(signum)
        raise StageInterrupted(signum)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stage(name: str, section: str, schema: type, experiment: str = "analysis",
          continues: Callable[[dict[str, Any], StageContext], str | None] | None = None,
          reads: Callable[[dict[str, Any], dict[str, Any]], list[str]] | None = None
          ) -> Callable[[Callable[[dict[str, Any], StageContext], StageResult]], Stage]:
    """Declare a stage: `name` and `section` may hold "{run}" (see the module docstring).

    `continues(cfg, ctx)` may name the MLflow run of an interrupted earlier attempt, which the
    stage then carries on instead of starting a new run (training's resume).
    `reads(cfg, config)` names the dotted keys of other sections the stage reads, from its own
    section `cfg` and the whole config; `ctx.root` holds those and nothing else.
    """
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"stage {name}: schema must be a dataclass, got {schema!r}")

    def wrap(body: Callable[[dict[str, Any], StageContext], StageResult]) -> Stage:
        return Stage(body, name, section, schema, experiment, continues, reads)

    return wrap
