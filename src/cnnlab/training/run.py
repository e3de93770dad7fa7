"""Train, test and save one experiment: the science of the train@<experiment> stages.

Per-epoch numbers and the model go to the stage's MLflow run through `cnnlab.core.tracking`.
"""

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

from cnnlab.core import tracking
from cnnlab.core.io import write_text
from cnnlab.core.threads import torch_threads
from cnnlab.data.prepared import load_prepared
from cnnlab.models import InputSpec, build_model, count_parameters
from cnnlab.training.augment import ShiftAndMask
from cnnlab.training.batches import TensorBatches, as_model_input
from cnnlab.training.checkpoint import save_checkpoint
from cnnlab.training.module import Classifier

HISTORY_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


@dataclass
class AugmentConfig:
    shift: list[int]  # [rows, columns]
    mask: list[int]


@dataclass
class TrainerConfig:
    """Keys of `trainer` (values in conf/trainer/*.yaml)."""

    max_epochs: int
    batch_size: int
    eval_batch_size: int
    optimizer: str
    lr: float
    schedule: str
    weight_decay: float
    limit_train_batches: Any  # a fraction (float) or a number of batches (int), as in Lightning
    limit_val_batches: Any
    limit_test_batches: Any
    threads: int | None
    augment: AugmentConfig


@dataclass
class ExperimentConfig:
    """An entry of `train` (conf/experiment/*.yaml): model + trainer + dataset + seed."""

    dataset: str
    description: str
    seed: int
    register_model: bool
    model: dict[str, Any]  # checked by the model's builder (cnnlab.models)
    trainer: TrainerConfig


@dataclass(frozen=True)
class RunOutputs:
    checkpoint: Path
    history: Path


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
        tracking.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])


def history_csv(rows: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()})
    return buf.getvalue()


def train_experiment(name: str, cfg: Mapping[str, Any], data_dir: str | Path,
                     outputs: RunOutputs) -> dict[str, Any]:
    """Fit `cfg['model']` on the prepared dataset in `data_dir` and write `outputs`.

    `cfg` is one validated ExperimentConfig as a dict. Returns the metrics.
    """
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no tips and banners
    trainer_cfg = dict(cfg["trainer"])
    seed = int(cfg["seed"])
    L.seed_everything(seed, workers=True, verbose=False)
    data = load_prepared(data_dir)
    spec = InputSpec(data.input_shape, len(data.classes), data.extras)
    model = build_model(cfg["model"], spec)  # a geometry error stops us here, before training
    module = Classifier(model, trainer_cfg["optimizer"], float(trainer_cfg["lr"]),
                        float(trainer_cfg["weight_decay"]), trainer_cfg["schedule"])
    batch = int(trainer_cfg["batch_size"])
    augment = ShiftAndMask.from_cfg(trainer_cfg["augment"])
    if augment is not None:
        augment.check_input(data.train.x.shape)
    train = TensorBatches(data.train.x, data.train.y, batch, shuffle=True, seed=seed,
                          augment=augment)
    eval_batch = int(trainer_cfg["eval_batch_size"])
    val = TensorBatches(data.val.x, data.val.y, eval_batch, False)
    test = TensorBatches(data.test.x, data.test.y, eval_batch, False)
    history = EpochHistory()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=int(trainer_cfg["max_epochs"]),
        deterministic=True, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_train_batches=trainer_cfg["limit_train_batches"],
        limit_val_batches=trainer_cfg["limit_val_batches"],
        limit_test_batches=trainer_cfg["limit_test_batches"],
        callbacks=[history],
    )
    n_params = count_parameters(model)
    tracking.set_tags({"cnnlab.experiment": name, "cnnlab.model": cfg["model"].get("name"),
                       "cnnlab.dataset": data.manifest.get("dataset", ""),
                       "mlflow.note.content": cfg["description"]})
    tracking.log_params({"data_manifest_sha256": data.manifest.get("files", {})})
    with torch_threads(trainer_cfg["threads"], "trainer.threads"):
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
    save_checkpoint(outputs.checkpoint, model, dict(cfg["model"]), spec, data.classes, name)
    write_text(outputs.history, history_csv(history.rows))
    example = as_model_input(data.test.x[:2].clone())
    tracking.log_model(model, example, name if cfg["register_model"] else None)
    return metrics
