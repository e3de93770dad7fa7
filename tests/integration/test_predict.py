"""`python -m cnnlab predict` on real files: MNIST test digits saved as PNG, FSDD recordings,
review lines. Each agrees with the evaluation path: the model on the prepared tensors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from PIL import Image

from cnnlab.__main__ import main
from cnnlab.data.mnist import as_mnist_digit
from cnnlab.data.prepared import load_prepared
from cnnlab.models import InputSpec, build_model
from cnnlab.predict.inputs import Recordings
from cnnlab.training.batches import as_model_input
from cnnlab.training.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import ROOT, compose_config
from tests.integration.test_audio_pipeline import RECORDINGS, fsdd_subset, needs_fsdd
from tests.integration.test_text_pipeline import CSV, write_reviews
from tests.stages import TINY_CNN, run_stage, save_untrained

pytestmark = pytest.mark.usefixtures("one_thread")


def predict(capsys, *args: str) -> dict:
    """The CLI in this process, --json; returns what it printed."""
    capsys.readouterr()  # what the test printed before (stage summaries) is not predict's
    assert main(["predict", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def paths(prepared: Path, models: Path) -> list[str]:
    return ["-o", f"paths.prepared={prepared}", "-o", f"paths.models={models}"]


def outputs(tmp_path: Path) -> list[str]:
    """Stage overrides that keep every output in the test's folder."""
    return [f"paths.{k}={tmp_path / k}" for k in ("prepared", "models", "metrics", "plots", "reports")]


def evaluation(checkpoint: Path, x: torch.Tensor) -> torch.Tensor:
    """Class probabilities as evaluation computes them: the model on prepared tensors."""
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        return torch.softmax(model(as_model_input(x.clone())).double(), dim=1)


def assert_agrees(predictions: list[dict], expected: torch.Tensor, classes: list[str]) -> None:
    assert len(predictions) == len(expected)
    for pred, row in zip(predictions, expected, strict=True):
        top = row.topk(min(3, len(classes)))
        assert [t["class"] for t in pred["top"]] == [classes[int(i)] for i in top.indices]
        assert [t["probability"] for t in pred["top"]] == pytest.approx(top.values.tolist(),
                                                                         abs=1e-5)


def first_experiment(dataset: str) -> str:
    return next(n for n, e in compose_config()["train"].items() if e["dataset"] == dataset)


def save_seeded(path: Path, name: str, data_dir: Path) -> None:
    """An untrained, seeded checkpoint of experiment `name` for the prepared data in `data_dir`
    (agreement with evaluation needs the shapes, not the accuracy)."""
    data = load_prepared(data_dir)
    torch.manual_seed(0)
    spec = InputSpec(data.input_shape, len(data.classes), data.extras)
    model_cfg = compose_config()["train"][name]["model"]
    save_checkpoint(path, build_model(model_cfg, spec), model_cfg, spec, data.classes, name)


@pytest.fixture
def mnist_models(tmp_path: Path, tiny_mnist: Path) -> list[str]:
    save_untrained(tmp_path / "models" / "mnist_cnn" / "model.ckpt", TINY_CNN, "mnist_cnn")
    return paths(tiny_mnist.parent, tmp_path / "models")


def test_test_digits_as_png_get_the_evaluation_probabilities(tmp_path, tiny_mnist, mnist_models,
                                                             capsys):
    test = load_prepared(tiny_mnist).test
    files = []
    for i in range(5):
        files.append(tmp_path / f"digit{i}.png")
        Image.fromarray(test.x[i, 0].numpy()).save(files[-1])
    out = predict(capsys, "mnist_cnn", *map(str, files), *mnist_models)
    assert [p["input"] for p in out["predictions"]] == list(map(str, files))
    assert all("converted_from" not in p for p in out["predictions"])  # already 28 x 28 grey
    expected = evaluation(tmp_path / "models" / "mnist_cnn" / "model.ckpt", test.x[:5])
    assert_agrees(out["predictions"], expected, [str(d) for d in range(10)])


def test_a_photo_of_dark_ink_is_made_an_mnist_digit(tmp_path, tiny_mnist, mnist_models, capsys):
    digit = load_prepared(tiny_mnist).test.x[0, 0].numpy()
    paper = np.full((240, 320), 255, np.uint8)  # dark ink, off-centre, 5x bigger, on white
    paper[10:150, 30:170] = 255 - np.asarray(Image.fromarray(digit).resize((140, 140)))
    Image.fromarray(paper).convert("RGB").save(tmp_path / "photo.jpg", quality=95)
    made = as_mnist_digit(np.asarray(Image.open(tmp_path / "photo.jpg").convert("L")))
    assert made.shape == (28, 28) and made[0].max() < 30  # light ink on black, empty border
    mass = made.astype(float) / made.sum()
    rows, cols = np.indices(made.shape)
    assert abs((rows * mass).sum() - 14) <= 1 and abs((cols * mass).sum() - 14) <= 1
    assert np.corrcoef(made.ravel(), digit.ravel())[0, 1] > 0.8  # the same digit, re-made
    out = predict(capsys, "mnist_cnn", str(tmp_path / "photo.jpg"), *mnist_models)
    assert out["predictions"][0]["converted_from"] == "320x240 RGB"
    expected = evaluation(tmp_path / "models" / "mnist_cnn" / "model.ckpt",
                          torch.from_numpy(made)[None, None])
    assert_agrees(out["predictions"], expected, [str(d) for d in range(10)])


@needs_fsdd
def test_fsdd_recordings_get_the_evaluation_probabilities(tmp_path, capsys):
    fsdd_subset(tmp_path / "rec", takes=(0,))
    prepared = tmp_path / "prepared"
    run_stage("prepare_audio", *outputs(tmp_path), "data.audio.source=folder",
              f"data.audio.folder={tmp_path / 'rec'}", "data.audio.split.test_speakers=[nicolas]",
              "data.audio.split.val_speakers=0", "data.audio.split.val_fraction=0.2")
    name = first_experiment("audio")
    checkpoint = tmp_path / "models" / name / "model.ckpt"
    save_seeded(checkpoint, name, prepared / "audio")
    origins = [line.rsplit(",", 1)[1].strip('"') for line in
               (prepared / "audio" / "clips.csv").read_text().splitlines() if line.startswith("test,")]
    out = predict(capsys, name, *(str(RECORDINGS / Path(o).name) for o in origins),
                  *paths(prepared, tmp_path / "models"))
    expected = evaluation(checkpoint, load_prepared(prepared / "audio").test.x)
    assert_agrees(out["predictions"], expected, [str(d) for d in range(10)])

    wave, rate = sf.read(RECORDINGS / "3_nicolas_0.wav", dtype="float32")  # the same words at 16 kHz
    faster = torchaudio.functional.resample(torch.from_numpy(wave), rate, 2 * rate).numpy()
    sf.write(tmp_path / "3_at_16k.flac", faster, 2 * rate)
    out = predict(capsys, name, str(tmp_path / "3_at_16k.flac"), *paths(prepared, tmp_path / "models"))
    assert out["predictions"][0]["resampled_from_hz"] == 2 * rate
    recordings = Recordings(load_prepared(prepared / "audio").manifest)
    back = recordings.read(tmp_path / "3_at_16k.flac")[0].x
    original = recordings.read(RECORDINGS / "3_nicolas_0.wav")[0].x
    assert torch.corrcoef(torch.stack([back.flatten(), original.flatten()]))[0, 1] > 0.95


def test_review_lines_get_the_evaluation_probabilities(tmp_path, capsys):
    source = write_reviews(tmp_path / "reviews.csv")
    prepared = tmp_path / "prepared"
    run_stage("prepare_text", *CSV, f"data.text.csv_path={source}", *outputs(tmp_path))
    name = first_experiment("text")
    checkpoint = tmp_path / "models" / name / "model.ckpt"
    save_seeded(checkpoint, name, prepared / "text")
    with open(source, newline="", encoding="utf-8") as f:
        lines = [row[1] for row in csv.reader(f)][1:]
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n".join(lines) + "\n\na zorblax , quuxish film\n", encoding="utf-8")
    out = predict(capsys, name, str(reviews), *paths(prepared, tmp_path / "models"))
    assert len(out["predictions"]) == len(lines) + 1  # the blank line is no review
    assert out["predictions"][-1]["unknown_words"] == 2
    assert out["predictions"][-1]["unknown"] == ["zorblax", "quuxish"]

    test = load_prepared(prepared / "text").test  # its rows are some of the lines, encoded
    capsys.readouterr()
    assert main(["predict", name, str(reviews), "--request", *paths(prepared, tmp_path / "models")]) == 0
    ids = json.loads(capsys.readouterr().out)["inputs"]  # what predict feeds the model
    rows = [ids.index(row) for row in test.x.tolist()]  # ValueError if a row has no line
    assert_agrees([out["predictions"][r] for r in rows], evaluation(checkpoint, test.x),
                  ["negative", "positive"])


BAD = {  # file name -> (bytes, what the one line must say)
    "corrupt.png": (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "unreadable or corrupt image"),
    "notes.txt": (b"a digit? no, words\n", "a text file, but this model takes PNG or JPEG"),
    "noise.wav": (b"RIFF\0\0\0\0WAVEfmt " + b"\1" * 30, "a recording, but this model takes PNG"),
    "binary.png": (b"\0\1\2\3" * 10, "neither an image, a recording nor text"),
}


@pytest.mark.parametrize("file", sorted(BAD))
def test_bad_files_get_one_line_and_exit_2(tmp_path, mnist_models, capsys, file):
    content, message = BAD[file]
    (tmp_path / file).write_bytes(content)
    assert main(["predict", "mnist_cnn", str(tmp_path / file), *mnist_models]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / file) in err and message in err


@pytest.mark.parametrize("model", ["no_such_model", "mnist_cnn:7", "models:/mnist_cnn/7"])
def test_a_model_that_does_not_exist_gets_one_line_and_exit_2(tmp_path, mnist_models, capsys,
                                                              model):
    Image.new("L", (28, 28)).save(tmp_path / "blank.png")
    assert main(["predict", model, str(tmp_path / "blank.png"), *mnist_models]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such registered model" in err and model.split(":")[0] in err


def test_the_command_line_exits_2_in_one_line_for_a_missing_file(tmp_path, mnist_models):
    done = subprocess.run([sys.executable, "-m", "cnnlab", "predict", "mnist_cnn",
                           str(tmp_path / "missing.png"), *mnist_models],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: {tmp_path / 'missing.png'}: file is missing\n"
