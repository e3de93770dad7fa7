"""`hydra/sweeper=study`: the entry Hydra instantiates; the work is in cnnlab.search.sweeper.

Hydra imports every module of `hydra_plugins` when it starts, so this one stays light: Optuna
is imported only when a search runs (as Hydra's own Optuna plugin does).
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class StudySweeper(Sweeper):
    """Hydra's Optuna sweeper as one resumable study, its best trial logged to MLflow."""

    def __init__(self, **settings: Any) -> None:
        from cnnlab.search.sweeper import StudySweeperImpl

        self.sweeper = StudySweeperImpl(**settings)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)
