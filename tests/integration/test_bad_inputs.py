"""A sweep of bad inputs through the stages: each is one error line that names the input at
fault, and no earlier output changes (not a byte, no temporary file left behind).

`CASES` lists every case once: (name, script, overrides, setup, message[, error, bad,
earlier]). The overrides and the message may hold `{root}`, the project folder of the case (its
`prepared/`, `models/`, `metrics/`, `plots/`, `reports/`, and the raw sources under `src/`).
The stage first runs once successfully (unless `earlier` is off), so that its outputs exist to
be kept; then `setup(root)` breaks one input, or the `bad` overrides hold the fault, and the
stage runs again. Every case runs in process; a few also through the scripts' command line
(in process, and one as a real subprocess), for the exit code 2 and the single stderr line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch import nn

from cnnlab.core.errors import CheckpointError, CnnlabError, ConfigError, DataError
from cnnlab.core.io import write_json
from tests.conftest import ROOT, TINY_TRAINER, compose_config
from tests.integration.test_text_pipeline import CSV, tiny_text_data, write_reviews
from tests.integration.test_text_pipeline import NAMES as TEXT_NAMES
from tests.stages import TINY_CNN, TINY_DNN, run_script, run_stage, save_untrained
from tests.unit.test_audio_data import write_fsdd
from tests.unit.test_mnist_readers import write_idx_folder

pytestmark = pytest.mark.usefixtures("one_thread")  # small convolutions: one thread

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # chmod does not stop root writing

MNIST_EXPERIMENTS = ("mnist_dnn", "mnist_cnn", "mnist_separable")  # params_report's inputs


# ------------------------------------------------------------ the project ----
@pytest.fixture(scope="module")
def template(tmp_path_factory, tiny_mnist) -> Path:
    """A project every stage under test can run in; each case works on its own copy."""
    root = tmp_path_factory.mktemp("template")
    shutil.copytree(tiny_mnist, root / "prepared" / "mnist")
    save_untrained(root / "models" / "tiny_cnn" / "model.ckpt", TINY_CNN, "tiny_cnn")
    save_untrained(root / "models" / "tiny_dnn" / "model.ckpt", TINY_DNN, "tiny_dnn")
    train = compose_config()["train"]
    for name in MNIST_EXPERIMENTS:
        params = save_untrained(root / "models" / name / "model.ckpt", train[name]["model"], name)
        write_json(root / "metrics" / "mnist" / f"{name}.json",
                   {"params": params, "test_acc": 0.9, "seconds_per_epoch": 1.0})
    tiny_text_data(root)  # what text_results reads: the data, its manifest, the models it permutes
    for name in TEXT_NAMES:
        write_json(root / "metrics" / "text" / f"{name}.json", {
            "test_acc": 0.8, "params": 110_000, "trainable_params": 110_000, "epochs": 4,
            "seconds_per_epoch": 2.0, "fit_seconds": 8.0})
    (root / "src").mkdir()
    write_idx_folder(root / "src" / "idx", n_train=30, n_test=8)
    write_reviews(root / "src" / "reviews.csv")
    write_fsdd(root / "src" / "wav")
    return root


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder (None) under `root`, by relative path."""
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


# --------------------------------------------------------------- setups ----
Setup = Callable[[Path], None]


def nothing(root: Path) -> None:
    """The inputs stay as they are: the fault is in the overrides."""


def truncate(relative: str) -> Setup:
    def setup(root: Path) -> None:
        path = root / relative
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return setup


def overwrite(relative: str, content: bytes) -> Setup:
    def setup(root: Path) -> None:
        (root / relative).write_bytes(content)
    return setup


def remove(relative: str) -> Setup:
    def setup(root: Path) -> None:
        path = root / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return setup


def both(*setups: Setup) -> Setup:
    def setup(root: Path) -> None:
        for one in setups:
            one(root)
    return setup


def foreign_checkpoint(relative: str) -> Setup:
    """A torch file that loads fine but is someone else's: a bare state dict."""
    def setup(root: Path) -> None:
        torch.save(nn.Linear(4, 2).state_dict(), root / relative)
    return setup


def relabel(relative: str) -> Setup:
    """Rewrite a prepared split with other labels: it still parses, only its hash tells."""
    def setup(root: Path) -> None:
        path = root / relative
        blob = torch.load(path, weights_only=True)
        torch.save({"x": blob["x"], "y": (blob["y"] + 1) % 10}, path)
    return setup


def drop_hashes(dataset: str) -> Setup:
    """A manifest of older data, without sha256s: loading it checks nothing."""
    def setup(root: Path) -> None:
        path = root / "prepared" / dataset / "manifest.json"
        manifest = json.loads(path.read_text())
        del manifest["files"]
        path.write_text(json.dumps(manifest))
    return setup


def unwritable(relative: str) -> Setup:
    """A folder no output can be created in: read-only, or (as root, whom chmod does not stop)
    a regular file where the folder should be."""
    def setup(root: Path) -> None:
        path = root / relative
        if AS_ROOT:
            path.write_text("a file where a folder should be\n")
        else:
            path.mkdir()
            path.chmod(0o555)
    return setup


GARBAGE = bytes(range(256)) * 8  # not UTF-8, not a RIFF header, not an IDX magic number

# -------------------------------------------------------------- stages ----
PATHS = tuple(f"paths.{k}={{root}}/{k}" for k in ("prepared", "models", "metrics", "plots",
                                                    "reports"))
FILTERS = ("run=filters", "analysis.filters.experiment=tiny_cnn", "analysis.filters.steps=2",
           "analysis.filters.max_test=100", "analysis.filters.threads=1")
INVARIANCE = ("analysis.invariance.cnn=tiny_cnn", "analysis.invariance.dense=tiny_dnn",
              "analysis.invariance.max_shift=1", "analysis.invariance.max_test=100",
              "analysis.invariance.threads=1")
CLASSES = ("analysis.classes.experiment=tiny_cnn", "analysis.classes.ascent.steps=2",
           "analysis.classes.max_test=100", "analysis.classes.threads=1")
PARAMS = ("analysis.params_report.dense_check_digits=16",)
TRAIN = ("run=mnist_cnn", "train.mnist_cnn.register_model=false", "train.mnist_cnn.trainer.threads=1",
         *(f"train.mnist_cnn.trainer.{k}={v}" for k, v in TINY_TRAINER.items()))
PREPARE_MNIST = ("data.mnist.source=idx", "data.mnist.idx_dir={root}/src/idx",
                 "data.mnist.val_size=5")
PREPARE_TEXT = (*CSV, "data.text.csv_path={root}/src/reviews.csv")
PREPARE_AUDIO = ("data.audio.source=folder", "data.audio.folder={root}/src/wav",
                 "data.audio.classes=['0','1','2']", "data.audio.split.by=speaker",
                 "data.audio.split.test_speakers=[carl]", "data.audio.split.val_speakers=[bob]",
                 "data.audio.features.n_mels=20", "data.audio.features.frames=16")

MNIST = "{root}/prepared/mnist"
NOT_A_CHECKPOINT = "not a readable cnnlab checkpoint"
HASH = "sha256 does not match manifest.json"


class Case(NamedTuple):
    name: str
    script: str
    overrides: tuple[str, ...]  # besides PATHS; may hold {root}
    setup: Setup  # breaks one input, after the earlier run
    message: str  # a regex for the error line, {root} the project folder (escaped)
    error: type[CnnlabError] = DataError
    bad: tuple[str, ...] = ()  # overrides of the failing run only (the fault, when in them)
    earlier: bool = True  # run the stage once successfully first: its outputs must stay


CASES = [
    # --- checkpoints: truncated, or someone else's file
    Case("filters-truncated-checkpoint", "units", FILTERS, truncate("models/tiny_cnn/model.ckpt"),
         f"{{root}}/models/tiny_cnn/model.ckpt: {NOT_A_CHECKPOINT}", CheckpointError),
    Case("filters-foreign-checkpoint", "units", FILTERS,
         foreign_checkpoint("models/tiny_cnn/model.ckpt"),
         f"{{root}}/models/tiny_cnn/model.ckpt: {NOT_A_CHECKPOINT} \\(KeyError", CheckpointError),
    Case("invariance-truncated-checkpoint", "invariance", INVARIANCE,
         truncate("models/tiny_dnn/model.ckpt"),
         f"{{root}}/models/tiny_dnn/model.ckpt: {NOT_A_CHECKPOINT}", CheckpointError),
    Case("invariance-foreign-checkpoint", "invariance", INVARIANCE,
         overwrite("models/tiny_cnn/model.ckpt", b'{"weights": [0.1, 0.2]}\n'),
         f"{{root}}/models/tiny_cnn/model.ckpt: {NOT_A_CHECKPOINT}", CheckpointError),
    Case("params_report-truncated-checkpoint", "params_report", PARAMS,
         truncate("models/mnist_separable/model.ckpt"),
         f"{{root}}/models/mnist_separable/model.ckpt: {NOT_A_CHECKPOINT}", CheckpointError),
    # --- prepared data: truncated, or altered so that it still parses (only the hash tells)
    Case("train-truncated-train-split", "train", TRAIN, truncate("prepared/mnist/train.pt"),
         f"{MNIST}/train.pt: {HASH}"),
    Case("train-relabelled-test-split", "train", TRAIN, relabel("prepared/mnist/test.pt"),
         f"{MNIST}/test.pt: {HASH}"),
    Case("filters-truncated-test-split", "units", FILTERS, truncate("prepared/mnist/test.pt"),
         f"{MNIST}/test.pt: {HASH}"),
    Case("invariance-relabelled-test-split", "invariance", INVARIANCE,
         relabel("prepared/mnist/test.pt"), f"{MNIST}/test.pt: {HASH}"),
    Case("invariance-truncated-split-of-older-data", "invariance", INVARIANCE,
         both(drop_hashes("mnist"), truncate("prepared/mnist/test.pt")),
         f"{MNIST}/test.pt: cannot load prepared tensors"),
    # --- overrides: a value of the wrong type, a key the schema does not know
    Case("train-wrong-type", "train", TRAIN, nothing,
         r"train\.mnist_cnn\.trainer\.max_epochs: .*'many'", ConfigError,
         bad=("train.mnist_cnn.trainer.max_epochs=many",)),
    Case("invariance-wrong-type", "invariance", INVARIANCE, nothing,
         r"analysis\.invariance\.max_shift: .*'far'", ConfigError,
         bad=("analysis.invariance.max_shift=far",)),
    Case("train-unknown-key", "train", TRAIN, nothing, r"train\.mnist_cnn\.trainer\.colour",
         ConfigError, bad=("+train.mnist_cnn.trainer.colour=red",)),
    Case("classes-unknown-key", "classes", CLASSES, nothing, r"analysis\.classes\.colour",
         ConfigError, bad=("+analysis.classes.colour=red",)),
    # --- an upstream output that is missing
    Case("filters-missing-checkpoint", "units", FILTERS, nothing,
         "{root}/models/absent/model.ckpt: checkpoint is missing", CheckpointError,
         bad=("analysis.filters.experiment=absent",)),
    Case("params_report-missing-metrics", "params_report", PARAMS,
         remove("metrics/mnist/mnist_cnn.json"),
         "{root}/metrics/mnist/mnist_cnn.json: metrics file is missing"),
    Case("text_results-missing-metrics", "text_results", (),
         remove(f"metrics/text/{TEXT_NAMES[-1]}.json"),
         f"{{root}}/metrics/text/{TEXT_NAMES[-1]}.json: metrics file is missing"),
    Case("train-missing-prepared-data", "train", TRAIN, remove("prepared/mnist"),
         f"{MNIST}/manifest.json: manifest is missing"),
    # --- an output folder that cannot be created
    Case("filters-unwritable-reports", "units", FILTERS, unwritable("blocked"),
         "{root}/blocked/reports/filters: cannot write this output",
         bad=("paths.reports={root}/blocked/reports",)),
    Case("train-unwritable-models", "train", TRAIN, unwritable("blocked"),
         "{root}/blocked/models/mnist_cnn/model.ckpt: cannot write this output",
         bad=("paths.models={root}/blocked/models",)),
    # --- raw sources that are empty or garbage
    Case("prepare_audio-garbage-wav", "prepare_audio", PREPARE_AUDIO,
         overwrite("src/wav/1_bob_9.wav", GARBAGE),
         "{root}/src/wav/1_bob_9.wav: unreadable or corrupt WAV"),
    Case("prepare_audio-empty-wav", "prepare_audio", PREPARE_AUDIO,
         overwrite("src/wav/2_anna_9.wav", b""),
         "{root}/src/wav/2_anna_9.wav: unreadable or corrupt WAV"),
    Case("prepare_text-empty-csv", "prepare_text", PREPARE_TEXT,
         overwrite("src/reviews.csv", b""), "{root}/src/reviews.csv: empty file"),
    Case("prepare_text-garbage-csv", "prepare_text", PREPARE_TEXT,
         overwrite("src/reviews.csv", GARBAGE), "{root}/src/reviews.csv: not UTF-8 text"),
    Case("prepare_mnist-empty-idx", "prepare_mnist", PREPARE_MNIST,
         overwrite("src/idx/train-images-idx3-ubyte", b""),
         "{root}/src/idx/train-images-idx3-ubyte: truncated IDX header"),
    Case("prepare_mnist-garbage-idx", "prepare_mnist", PREPARE_MNIST,
         overwrite("src/idx/t10k-labels-idx1-ubyte", GARBAGE),
         "{root}/src/idx/t10k-labels-idx1-ubyte: wrong magic number"),
]
BY_NAME = {case.name: case for case in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"
COMMAND_LINE = ["filters-truncated-checkpoint", "train-relabelled-test-split",
                "prepare_text-garbage-csv"]
SUBPROCESS = "filters-truncated-checkpoint"  # a Python start with torch and MLflow: ~10 s


def params(names: list[str]) -> list:
    """The cases as test parameters, named."""
    return [pytest.param(BY_NAME[name], id=name) for name in names]


def prepare(case: Case, template: Path, tmp_path: Path) -> tuple[Path, list[str], str]:
    """The case's own project, its overrides and its message, with the earlier run done and
    the input broken."""
    root = tmp_path / "project"  # beside the test's own state (conftest), not in it
    shutil.copytree(template, root)
    good = [o.format(root=root) for o in (*PATHS, *case.overrides)]
    if case.earlier:
        run_stage(case.script, *good)
    case.setup(root)
    return (root, [*good, *(o.format(root=root) for o in case.bad)],
            case.message.format(root=re.escape(str(root))))


# ---------------------------------------------------------------- tests ----
@pytest.mark.parametrize("case", params(list(BY_NAME)))
def test_bad_input_is_one_error_naming_it_and_keeps_earlier_outputs(case, template, tmp_path):
    root, overrides, message = prepare(case, template, tmp_path)
    before = snapshot(root)
    with pytest.raises(case.error) as caught:
        run_stage(case.script, *overrides)
    line = str(caught.value)
    assert re.search(message, line), line
    assert "\n" not in line
    assert snapshot(root) == before


def assert_one_error_line(stderr: str, message: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(f"error: {message}.*", lines[0]), lines


@pytest.mark.parametrize("case", params(COMMAND_LINE))
def test_stage_script_prints_one_line_and_exits_2(case, template, tmp_path, capsys):
    root, overrides, message = prepare(case, template, tmp_path)
    before = snapshot(root)
    capsys.readouterr()  # the earlier, successful run's summary
    code = run_script(case.script, *overrides)
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert_one_error_line(err, message)
    assert snapshot(root) == before


@pytest.mark.parametrize("case", params([SUBPROCESS]))
def test_stage_script_as_its_own_process_prints_one_line_and_exits_2(case, template, tmp_path):
    """The one stage script run as DVC runs it, `python pipelines/<script>.py`: nothing else
    (an import-time warning, a log line) reaches stderr."""
    root, overrides, message = prepare(case, template, tmp_path)
    before = snapshot(root)
    result = subprocess.run([sys.executable, f"pipelines/{case.script}.py", *overrides],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert_one_error_line(result.stderr, message)
    assert snapshot(root) == before

