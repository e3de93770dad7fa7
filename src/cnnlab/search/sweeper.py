"""Hydra's Optuna sweeper as a study that survives its process (conf/hydra/sweeper/study.yaml).

What it adds to `hydra_plugins.hydra_optuna_sweeper` (whose search-space syntax, sampler,
launcher calls and ask/tell loop it reuses):
- the study lives in an RDB (`storage.default_storage()`, or `hydra.sweeper.storage`);
- `n_trials` is the study's total: a rerun of the same command resumes the study, runs only the
  trials still missing, and never reruns a finished one. A trial left RUNNING by a stopped
  sweep (same host, process gone) is marked FAIL with `cnnlab.interrupted` and not counted;
- job numbers continue the trial numbers, so `multirun/search/<study>/<n>/` and the MLflow child
  run tagged `cnnlab.job=<n>` belong to trial n;
- a failed trial (its job raised) is marked FAIL and the study goes on (`max_failure_rate: 1.0`
  in conf); the parent run of the trials gets the best value and the best parameters.

Pruning: a trial is a Hydra job that sees only its overrides (it may run in another process or
on another machine), and Hydra's sweeper can only tell a trial COMPLETE or FAIL, so trials are
not pruned; with 1-epoch trials there is nothing to prune between epochs anyway.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import DictConfig
from optuna.trial import TrialState

from cnnlab.core.tracking.runs import log_sweep_outcome, process_alive
from cnnlab.search.storage import check_optuna, default_storage, shown

log = logging.getLogger(__name__)
INTERRUPTED = "cnnlab.interrupted"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class StudySweeperImpl(OptunaSweeperImpl):
    """Hydra's Optuna sweeper with a resumable study and its outcome in MLflow."""

    def __init__(self, sampler: Any, direction: Any, storage: str | None, study_name: str,
                 n_trials: int, n_jobs: int, max_failure_rate: float, objective: str,
                 params: DictConfig | None = None, search_space: DictConfig | None = None,
                 custom_search_space: str | None = None) -> None:
        check_optuna()
        self.url = storage or default_storage()  # the plugin prints its storage: no password there
        super().__init__(sampler, direction, optuna.storages.RDBStorage(self.url), study_name,
                         n_trials, n_jobs, max_failure_rate, search_space, custom_search_space,
                         params)
        self.objective = objective

    def sweep(self, arguments: list[str]) -> None:
        study = optuna.create_study(study_name=self.study_name, storage=self.storage,
                                    directions=self._get_directions(), load_if_exists=True)
        _, fixed = create_params_from_overrides([*self._parse_sweeper_params_config(), *arguments])
        study.set_user_attr("cnnlab.run", str(fixed.get("run", self.config.get("run", ""))))
        study.set_user_attr("cnnlab.objective", self.objective)
        mark_interrupted(study)
        done = sum(t.state in FINISHED and not t.user_attrs.get(INTERRUPTED)
                   for t in study.get_trials(deepcopy=False))
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        self.job_idx = min((t.number for t in waiting), default=len(study.trials))  # job n: trial n
        total, self.n_trials = self.n_trials, self.n_trials - done
        log.info(f"Study {self.study_name}: {done} of {total} trials done, "
                 f"{max(0, self.n_trials)} to run (storage {shown(self.url)})")
        if self.n_trials > 0:
            try:
                super().sweep(arguments)
            except ValueError:
                if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                    print(f"error: study {self.study_name}: no trial completed; see the trials' "
                          "errors above", file=sys.stderr)
                    sys.exit(2)
                raise
        self._log_outcome(study)

    def _configure_trials(self, trials: list[optuna.Trial], *args: Any) -> Any:
        for trial in trials:  # who runs it: a later sweep can tell a stopped sweep's trials
            trial.set_user_attr("cnnlab.host", socket.gethostname())
            trial.set_user_attr("cnnlab.pid", os.getpid())
        return super()._configure_trials(trials, *args)

    def _log_outcome(self, study: optuna.Study) -> None:
        """The best trial on the MLflow parent run of the trials (and in the log)."""
        trials = study.get_trials(deepcopy=False)
        counts = Counter(t.state.name.lower() for t in trials if not t.user_attrs.get(INTERRUPTED))
        if not counts["complete"]:
            return
        best = study.best_trial
        log.info(f"Study {self.study_name}: best {self.objective}={best.value:.6g} "
                 f"(trial {best.number}): {best.params}")
        logged = log_sweep_outcome(
            Path(self.config.hydra.sweep.dir).name,
            metrics={f"best_{self.objective}": best.value,
                     **{f"trials_{state}": counts[state] for state in ("complete", "fail", "pruned")}},
            params={f"best.{name}": value for name, value in best.params.items()},
            tags={"cnnlab.study": self.study_name, "cnnlab.storage": shown(self.url),
                  "cnnlab.best_trial": best.number, "cnnlab.best_params": json.dumps(best.params)},
            step=sum(counts.values()))
        if not logged:
            log.warning(f"Study {self.study_name}: no MLflow run of its trials to log the best on")


def mark_interrupted(study: optuna.Study) -> list[int]:
    """Mark FAIL (and `cnnlab.interrupted`) the RUNNING trials whose sweep on this host has
    died; returns their numbers. Trials of a live sweep, or of another host, are left alone."""
    marked = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid, host = frozen.user_attrs.get("cnnlab.pid"), frozen.user_attrs.get("cnnlab.host")
        if host != socket.gethostname() or (pid is not None and process_alive(pid)):
            continue
        optuna.Trial(study, frozen._trial_id).set_user_attr(INTERRUPTED, True)
        study.tell(frozen.number, state=TrialState.FAIL)
        marked.append(frozen.number)
    if marked:
        log.info(f"Study {study.study_name}: trials {marked} were interrupted; marked failed")
    return marked
