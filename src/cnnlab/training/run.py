"""Train, test, save and track one experiment: the whole training stage in one function."""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cnnlab import tracking
from cnnlab.data.prepared import load_prepared
from cnnlab.io import write_json, write_text
from cnnlab.models import InputSpec, build_model, count_parameters
from cnnlab.threads import torch_threads
from cnnlab.training.augment import ShiftAndMask
from cnnlab.training.batches import TensorBatches, as_model_input
from cnnlab.training.checkpoint import save_checkpoint
from cnnlab.training.module import Classifier

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


@dataclass(frozen=True)
class RunOutputs:
    checkpoint: Path
    metrics: Path
    history: Path

    @classmethod
    def under(cls, models_dir: Path, metrics_dir: Path, plots_dir: Path, name: str) -> RunOutputs:
        return cls(models_dir / name / "model.ckpt", metrics_dir / f"{name}.json",
                   plots_dir / f"{name}.csv")


class EpochHistory(L.Callback):
    """Collects per-epoch metrics and wall time, and logs them to the active MLflow run."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k in HISTORY_FIELDS}
        row = {"epoch": trainer.current_epoch + 1, **metrics,
               "seconds": time.perf_counter() - self._start}
        self.rows.append(row)
        import mlflow

        mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])


def history_csv(rows: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def train_experiment(name: str, cfg: Mapping[str, Any], data_dir: str | Path, outputs: RunOutputs,
                     sweep_id: str | None = None, run_name: str | None = None) -> dict[str, Any]:
    """Fit `cfg['model']` on the prepared dataset in `data_dir` and write `outputs`.

    `cfg` is one resolved experiment: `model`, `trainer` and `seed`. Returns the metrics.
    """
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no tips and banners
    trainer_cfg = dict(cfg["trainer"])
    seed = int(cfg.get("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    data = load_prepared(data_dir)
    spec = InputSpec(data.input_shape, len(data.classes), data.extras)
    model = build_model(cfg["model"], spec)  # a geometry error stops us here, before training
    module = Classifier(model, trainer_cfg.get("optimizer", "adam"), float(trainer_cfg["lr"]),
                        float(trainer_cfg.get("weight_decay", 0.0)), trainer_cfg.get("schedule", "none"))
    batch = int(trainer_cfg["batch_size"])
    augment = ShiftAndMask.from_cfg(trainer_cfg.get("augment"))
    if augment is not None:
        augment.check_input(data.train.x.shape)
    train = TensorBatches(data.train.x, data.train.y, batch, shuffle=True, seed=seed,
                          augment=augment)
    val = TensorBatches(data.val.x, data.val.y, int(trainer_cfg.get("eval_batch_size", 1000)), False)
    test = TensorBatches(data.test.x, data.test.y, int(trainer_cfg.get("eval_batch_size", 1000)), False)
    history = EpochHistory()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=int(trainer_cfg["max_epochs"]),
        deterministic=True, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_train_batches=trainer_cfg.get("limit_train_batches", 1.0),
        limit_val_batches=trainer_cfg.get("limit_val_batches", 1.0),
        limit_test_batches=trainer_cfg.get("limit_test_batches", 1.0),
        callbacks=[history],
    )
    n_params = count_parameters(model)
    tags = {"cnnlab.experiment": name, "cnnlab.dataset": str(data.manifest.get("dataset", "")),
            "cnnlab.model": str(cfg["model"].get("name"))}
    with (torch_threads(trainer_cfg.get("threads"), "trainer.threads"),
          tracking.start_run(name, run_name or name, tags, sweep_id) as run):
        tracking.log_params({**cfg, "data_manifest_sha256": data.manifest.get("files", {})})
        fit_start = time.perf_counter()
        trainer.fit(module, train, val)
        fit_seconds = time.perf_counter() - fit_start
        test_metrics = trainer.test(module, test, verbose=False)[0]
        epochs = [r["seconds"] for r in history.rows]
        metrics = {
            "test_acc": float(test_metrics["test_acc"]),
            "test_loss": float(test_metrics["test_loss"]),
            "final_val_acc": history.rows[-1].get("val_acc") if history.rows else None,
            "params": n_params,
            "trainable_params": count_parameters(model, trainable_only=True),
            "epochs": len(history.rows),
            "seconds_per_epoch": sum(epochs) / len(epochs) if epochs else None,
            "fit_seconds": fit_seconds,
        }
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
        save_checkpoint(outputs.checkpoint, model, dict(cfg["model"]), spec, data.classes, name)
        write_json(outputs.metrics, metrics)
        write_text(outputs.history, history_csv(history.rows))
        for path in (outputs.checkpoint, outputs.metrics, outputs.history):
            mlflow.log_artifact(str(path))
        example = as_model_input(data.test.x[:2].clone())
        _log_model(model, example, name if cfg.get("register_model", True) else None)
        metrics["mlflow_run_id"] = run.info.run_id
    return metrics


def _log_model(model: torch.nn.Module, example: torch.Tensor, registered_name: str | None) -> None:
    """Log the model (a traced graph that serves without cnnlab) and register it by name."""
    import mlflow.pytorch

    mlflow.pytorch.log_model(model, name="model", input_example=example.numpy(),
                             registered_model_name=registered_name,
                             pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
