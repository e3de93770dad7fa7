"""Which run wrote a number: a stage's outputs traced back to the MLflow run that made them.

Kept apart from `runs` so that a reader of the store (the report, `compare`) needs MLflow
only, not torch.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from cnnlab.core import environment


def run_environment(experiment: str, metric: str, value: Any, latest: int = 100
                    ) -> dict[str, str] | None:
    """The environment (cnnlab.core.environment) of the FINISHED run, among the `latest` of
    MLflow experiment `experiment`, that logged `metric` = `value`; None when there is no such
    run, or when the store does not answer (provenance must not cost a stage)."""
    if value is None:
        return None
    try:
        found = mlflow.get_experiment_by_name(experiment)
        runs = MlflowClient().search_runs([found.experiment_id], "attributes.status = 'FINISHED'",
                                          max_results=latest,
                                          order_by=["attributes.start_time DESC"]) if found else []
    except Exception:  # noqa: BLE001 - any failure to reach the store
        return None
    return next((environment.from_tags(run.data.tags) or None for run in runs
                 if run.data.metrics.get(metric) == value), None)
