"""Train, test and save one experiment: the science of the train@<experiment> stages.

Per-epoch numbers and the model go to the stage's MLflow run through `cnnlab.core.tracking.runs`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment
from torch import nn

from cnnlab.core import progress
from cnnlab.core.devices import check_trainer, deterministic_mode, device_count
from cnnlab.core.environment import TAG_PREFIX
from cnnlab.core.errors import ConfigError, StageInterrupted
from cnnlab.core.io import sha256_file, write_text
from cnnlab.core.slurm import rendezvous
from cnnlab.core.threads import torch_threads
from cnnlab.core.tracking import runs as tracking
from cnnlab.data.prepared import load_prepared
from cnnlab.models import InputSpec, build_model, count_parameters
from cnnlab.training.augment import ShiftAndMask
from cnnlab.training.batches import TensorBatches, as_model_input
from cnnlab.training.checkpoint import save_checkpoint
from cnnlab.training.figures import confusion_matrix, save_confusion, save_curves
from cnnlab.training.module import Classifier
from cnnlab.training.requeue import REQUEUE_SIGNAL, RequeueOnSignal, under_slurm_batch
from cnnlab.training.resume import RandomState, ResumeState, SaveEveryEpoch

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
    channels_last: bool  # NHWC layout while fitting (cnnlab.training.module.Classifier)
    accelerator: str  # as Lightning's Trainer, checked by cnnlab.core.devices.check_trainer
    devices: Any  # a number, a list of indices, -1 or "auto"
    strategy: str
    num_nodes: int
    precision: str
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


class PlaceBatches(L.Callback):
    """Moves the in-memory batches to the training device once per fit and test, and gives
    each rank of a multi-process run its shard."""

    def __init__(self, *batches: TensorBatches) -> None:
        self.batches = batches

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for batches in self.batches:
            batches.place(trainer.strategy.root_device, trainer.global_rank, trainer.world_size)


class EpochHistory(L.Callback):
    """Collects per-epoch metrics and wall time, and logs them to the active MLflow run."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state["rows"])

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


def log_evidence(name: str, cfg: Mapping[str, Any], model: nn.Module, data: Any,
                 data_dir: Path, rows: list[dict[str, float]], metrics: Mapping[str, Any],
                 eval_batch: int) -> None:
    """What the dashboard shows of a training: its figures, its dataset, its model."""
    test = TensorBatches(data.test.x, data.test.y, eval_batch, shuffle=False)
    counts = confusion_matrix(model, test, len(data.classes))
    with tempfile.TemporaryDirectory(prefix="cnnlab-figures-") as tmp:
        tracking.log_images([
            save_curves(rows, f"{name}: training curves", Path(tmp) / "training_curves.png"),
            save_confusion(counts, data.classes, f"{name}: test set",
                           Path(tmp) / "confusion_matrix.png")])
    manifest = data_dir / "manifest.json"
    tracking.log_dataset(str(data.manifest.get("dataset", data_dir.name)),
                         sha256_file(manifest)[:16] if manifest.is_file() else "",
                         json.dumps({"path": str(data_dir.resolve()),
                                     "source": data.manifest.get("source", "")}))
    accuracy = (f"test accuracy {metrics['test_acc']:.2%} on {metrics['test_samples']} test "
                f"samples of {data.manifest.get('dataset', data_dir.name)}")
    tracking.log_model(model, as_model_input(data.test.x[:2].clone()),
                       name if cfg["register_model"] else None,
                       f"{cfg['description']}: {accuracy} (cnnlab experiment {name})")


def train_experiment(name: str, cfg: Mapping[str, Any], data_dir: str | Path,
                     outputs: RunOutputs, in_sweep: bool = False,
                     resume: ResumeState | None = None, evidence: bool = True) -> dict[str, Any]:
    """Fit `cfg['model']` on the prepared dataset in `data_dir` and write `outputs`.

    `cfg` is one validated ExperimentConfig as a dict; `in_sweep`: a job of a Hydra multirun;
    `resume`: where the state of every finished epoch is kept, and resumed from if it is
    there (removed after success); `evidence`: log figures, dataset and model to the run (a
    replicate seed skips them). Returns the metrics. Under DDP every rank trains; rank 0
    writes the outputs.
    """
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no tips and banners
    trainer_cfg = dict(cfg["trainer"])
    kind = check_trainer(trainer_cfg)
    processes = int(trainer_cfg["num_nodes"]) * device_count(trainer_cfg["devices"], "trainer.devices")
    if in_sweep and (processes > 1 or str(trainer_cfg["strategy"]).startswith("ddp")):
        raise ConfigError(f"trainer.strategy={trainer_cfg['strategy']!r}, trainer.devices="
                          f"{trainer_cfg['devices']!r}: DDP restarts the script with its "
                          "arguments, which a Hydra multirun cannot replay; run a DDP training "
                          "alone (DVC stage or single run) or sweep with one device per job")
    if processes > 1:
        rendezvous()
    seed = int(cfg["seed"])
    L.seed_everything(seed, workers=True, verbose=False)
    data = load_prepared(data_dir)
    spec = InputSpec(data.input_shape, len(data.classes), data.extras)
    model = build_model(cfg["model"], spec)  # a geometry error stops us here, before training
    module = Classifier(model, trainer_cfg["optimizer"], float(trainer_cfg["lr"]),
                        float(trainer_cfg["weight_decay"]), trainer_cfg["schedule"],
                        bool(trainer_cfg["channels_last"]))
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
    requeue = RequeueOnSignal() if resume and under_slurm_batch() else None
    trainer = L.Trainer(
        accelerator=trainer_cfg["accelerator"], devices=trainer_cfg["devices"],
        strategy=trainer_cfg["strategy"], num_nodes=int(trainer_cfg["num_nodes"]),
        precision=trainer_cfg["precision"], max_epochs=int(trainer_cfg["max_epochs"]),
        deterministic=deterministic_mode(kind), logger=False, enable_checkpointing=False,
        enable_progress_bar=progress.enabled(), enable_model_summary=False, num_sanity_val_steps=0,
        limit_train_batches=trainer_cfg["limit_train_batches"],
        limit_val_batches=trainer_cfg["limit_val_batches"],
        limit_test_batches=trainer_cfg["limit_test_batches"],
        callbacks=[history, PlaceBatches(train, val, test), RandomState(train),
                   *([SaveEveryEpoch(resume, tracking.active_run_id())] if resume else []),
                   *([requeue] if requeue else [])],  # after SaveEveryEpoch: the state is saved
        plugins=[SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else None,
    )
    n_params = count_parameters(model)
    if evidence:  # a replicate shares its stage's run: the tags and params are the stage's
        tracking.set_tags({"cnnlab.experiment": name, "cnnlab.model": cfg["model"].get("name"),
                           "cnnlab.dataset": data.manifest.get("dataset", ""),
                           "mlflow.note.content": cfg["description"]})
        tracking.log_params({"data_manifest_sha256": data.manifest.get("files", {})})
    with torch_threads(trainer_cfg["threads"], "trainer.threads"):
        if evidence:  # the count the stage's run recorded at its start may not be the training's
            tracking.set_tags({f"{TAG_PREFIX}torch_threads": torch.get_num_threads()})
        fit_start = time.perf_counter()
        checkpoint = resume.checkpoint if resume and resume.exists() else None
        if checkpoint:
            print(f"train {name}: resuming after epoch {resume.meta['epochs_done']} of "
                  f"{trainer_cfg['max_epochs']} from {checkpoint}")
        trainer.fit(module, train, val, ckpt_path=checkpoint)
        fit_seconds = time.perf_counter() - fit_start
        if requeue and requeue.signalled and len(history.rows) < int(trainer_cfg["max_epochs"]):
            requeue.requeue()
            raise StageInterrupted(REQUEUE_SIGNAL)
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
        "test_samples": int(test_metrics["test_samples"]),
        "world_size": trainer.world_size,
    }
    if trainer.is_global_zero:
        model.cpu()
        save_checkpoint(outputs.checkpoint, model, dict(cfg["model"]), spec, data.classes, name)
        write_text(outputs.history, history_csv(history.rows))
        if evidence:
            log_evidence(name, cfg, model, data, Path(data_dir), history.rows, metrics,
                         eval_batch)
        if resume:
            resume.remove()
    return metrics
