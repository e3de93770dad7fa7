"""Speech end to end on real recordings: a small FSDD subset through prepare (with its
pitch-shifted test clips), one epoch of each speech model, a further seed, cross-gender and the
results stage with its pitch-shift curves; plus the stage entry points' one-line errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from cnnlab.core.claims import read_claims
from cnnlab.data.audio.shift import load_shifted
from cnnlab.data.prepared import load_prepared
from cnnlab.models import InputSpec, build_model, count_parameters
from cnnlab.training.checkpoint import load_checkpoint
from tests.conftest import TINY_TRAINER, compose_config
from tests.stages import run_script, run_stage

ROOT = Path(__file__).resolve().parents[2]
FSDD = Path(os.environ.get("CNNLAB_FSDD_DIR", ROOT.parent / "shared" / "datasets" / "fsdd"))
RECORDINGS = FSDD / "recordings" if (FSDD / "recordings").is_dir() else FSDD
needs_fsdd = pytest.mark.skipif(
    not (RECORDINGS / "0_jackson_0.wav").is_file(),
    reason=f"FSDD recordings not found at {RECORDINGS} (set CNNLAB_FSDD_DIR to the folder)")


def fsdd_subset(dest: Path, speakers=("jackson", "nicolas"), takes=(0, 1, 2)) -> Path:
    """2 speakers x 10 digits x 3 takes of the real recordings."""
    dest.mkdir(parents=True)
    for speaker in speakers:
        for digit in range(10):
            for take in takes:
                name = f"{digit}_{speaker}_{take}.wav"
                shutil.copyfile(RECORDINGS / name, dest / name)
    return dest


AUDIO = [name for name, exp in compose_config()["train"].items() if exp["dataset"] == "audio"]


@needs_fsdd
def test_fsdd_subset_prepares_trains_and_reports(tmp_path: Path):
    fsdd_subset(tmp_path / "rec")
    paths = [f"paths.{k}={tmp_path / k}" for k in ("prepared", "models", "metrics", "plots",
                                                    "reports")]
    manifest_sizes = run_stage(
        "prepare_audio", *paths, "data.audio.source=folder", f"data.audio.folder={tmp_path / 'rec'}",
        "data.audio.split.test_speakers=[nicolas]", "data.audio.split.val_speakers=0",
        "data.audio.split.val_fraction=0.2").metrics["sizes"]
    assert manifest_sizes == {"train": 24, "val": 6, "test": 30}
    data_dir = tmp_path / "prepared" / "audio"
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["split"]["speakers"]["test"] == ["nicolas"]
    assert "nicolas" not in manifest["split"]["speakers"]["train"]
    data = load_prepared(data_dir)
    features = compose_config()["data"]["audio"]["features"]
    assert data.input_shape == (1, features["n_mels"], features["frames"])
    assert data.train.x.dtype == torch.float32 and torch.isfinite(data.train.x).all()

    tiny = [f"train.{name}.trainer.{k}={v}" for name in AUDIO
            for k, v in {**TINY_TRAINER, "batch_size": 8}.items()]
    for name in AUDIO:
        metrics = run_stage("train", f"run={name}", *paths, *tiny,
                            f"train.{name}.register_model=false").metrics
        assert metrics["epochs"] == 1
    model, meta = load_checkpoint(tmp_path / "models" / "audio_freq_slide" / "model.ckpt")
    assert meta["classes"] == [str(d) for d in range(10)]
    assert model(data.test.x[:2]).shape == (2, 10)

    # the test clips shifted in pitch, prepared once, exactly as the test split at shift 0
    shifted = load_shifted(data_dir, manifest)
    grid = compose_config()["data"]["audio"]["pitch_shift"]["semitones"]
    assert shifted["semitones"].tolist() == grid and shifted["x"].shape[:2] == (len(grid), 30)
    assert torch.equal(shifted["x"][grid.index(0)], data.test.x)
    assert not torch.equal(shifted["x"][grid.index(4)], data.test.x)

    compared = ["audio_freq_slide", "audio_time_slide"]
    run_stage("seeds", "run=audio", *paths, "seeds.audio.seeds=[7]",
              f"seeds.audio.experiments=[{','.join(compared)}]", *tiny)
    cross = run_stage("cross_gender", *paths, "analysis.cross_gender.male=[jackson]",
                      "analysis.cross_gender.female=[nicolas]", "analysis.cross_gender.seeds=[1,2]",
                      *tiny).metrics
    assert cross["clips"] == {"male": 30, "female": 30}
    assert len(cross["male_to_female"]["audio_freq_slide"]["test_acc"]) == 2

    windows = run_stage("context_windows", *paths, "analysis.context_windows.windows=[11,64]",
                        "analysis.context_windows.seeds=[1,2]",
                        "analysis.context_windows.max_epochs=1",
                        "analysis.cross_gender.male=[jackson]",
                        "analysis.cross_gender.female=[nicolas]", *tiny)
    check_context_windows(windows, tmp_path, data)

    result = run_stage("audio_results", *paths)
    out = tmp_path / "reports" / "audio_results"
    saved = json.loads((out / "results.json").read_text())
    assert [r["experiment"] for r in saved["rows"]] == AUDIO
    assert {r["experiment"]: r["seeds"] for r in saved["rows"]} == {
        name: 2 if name in compared else 1 for name in AUDIO}
    curves = saved["pitch_shift"]
    assert list(curves) == AUDIO and curves["audio_freq_slide"]["semitones"] == grid
    assert len(curves["audio_freq_slide"]["accuracy"]) == 2  # one curve per seed
    at_zero = curves["audio_dense"]["accuracy"][0][grid.index(0)]
    assert at_zero == pytest.approx(result.metrics["audio_dense"]["test_acc"], abs=1e-6)
    assert (out / "pitch_shift.png").stat().st_size > 0
    assert (tmp_path / "plots" / "audio_pitch_shift.csv").read_text().startswith(
        "semitones,experiment,accuracy")
    claims = read_claims(out / "claims.json")
    assert [c.experiment for c in claims] == [
        "audio_freq_slide vs audio_time_slide", "audio_freq_slide vs audio_time_slide, pitch shift",
        "audio_freq_slide vs audio_time_slide, cross-gender", "audio_full2d vs audio_dense"]
    assert claims[0].label in ("yes", "no", "not shown") and "unseen" in claims[0].evidence
    assert claims[1].label in ("yes", "no", "not shown") and "2 seeds" in claims[1].evidence
    assert claims[2].label in ("yes", "no", "not shown") and "30 female" in claims[2].evidence
    assert claims[3].label == "not shown" and "one seed" in claims[3].evidence
    md = (out / "results.md").read_text()
    assert "nicolas" in md and "examples_classes.png" in md and "pitch_shift.png" in md
    assert (out / "examples_speakers.png").is_file()


def check_context_windows(result, tmp_path: Path, data) -> None:
    """Every model at each k within its budget, every setting judged, the curve written."""
    section = compose_config()["analysis"]["context_windows"]
    names = [section[key] for key in ("frequency_only", "time_only", "image_cnn")]
    saved = json.loads((tmp_path / "reports" / "context_windows" / "results.json").read_text())
    assert list(saved) == ["11", "64"]
    for k, r in saved.items():
        spec = InputSpec((*data.input_shape[:-1], int(k)), 10)
        for name in names:  # the stated count is the model's, and within the budget
            assert r["params"][name] == count_parameters(build_model(r["models"][name], spec))
            assert r["params"][name] == pytest.approx(section["params"], rel=0.01)
        for setting in ("unseen", "pitch_shift", "cross_gender"):
            assert sorted(r[setting]["accuracy"]) == sorted(names)
            assert all(len(a) == 2 for a in r[setting]["accuracy"].values())  # two seeds
            assert r[setting]["verdict"] in ("yes", "no", "not shown")
    # every test clip gives a window or more; a window as long as the clip is the clip
    assert saved["11"]["windows"]["test"] >= 30 and saved["64"]["windows"]["test"] == 30
    assert result.metrics["windows"]["11"]["unseen"]["verdict"] == saved["11"]["unseen"]["verdict"]
    claims = read_claims(tmp_path / "reports" / "context_windows" / "claims.json")
    assert [c.experiment for c in claims] == [f"{names[0]} vs {names[1]}, k={k}" for k in (11, 64)]
    for setting in ("unseen", "pitch_shift", "cross_gender"):
        rows = (tmp_path / "plots" / "context_windows" / f"{setting}.csv").read_text().splitlines()
        assert rows[0] == "k,experiment,accuracy" and len(rows) == 1 + 2 * len(names)
    md = (tmp_path / "reports" / "context_windows" / "context_windows.md").read_text()
    assert "Abdel-Hamid" in md and "context_windows.png" in md
    assert (tmp_path / "reports" / "context_windows" / "context_windows.png").stat().st_size > 0


def test_model_configs_have_the_promised_geometry():
    """freq_slide: the first kernel spans every frame, so every layer moves along frequency
    only; time_slide: every band, along time only; kx1 and 1xk: k x 1 and 1 x k kernels and
    pools; budgets within 25% of each other."""
    cfg = compose_config()
    feats = cfg["data"]["audio"]["features"]
    bands, frames = feats["n_mels"], feats["frames"]
    spec = InputSpec((1, bands, frames), 10)
    models = {name: cfg["train"][name]["model"] for name in AUDIO}
    first, *rest = models["audio_freq_slide"]["conv"]
    assert tuple(first["kernel"])[1] == frames
    assert all(tuple(c["kernel"])[1] == 1 for c in rest)
    assert all(tuple(c["pool"])[1] == 1 for c in models["audio_freq_slide"]["conv"])
    plan = build_model(models["audio_freq_slide"], spec).plan
    assert all(layer.out_shape[2] == 1 for layer in plan if len(layer.out_shape) == 3)
    first, *rest = models["audio_time_slide"]["conv"]
    assert tuple(first["kernel"])[0] == bands
    assert all(tuple(c["kernel"])[0] == 1 for c in rest)
    plan = build_model(models["audio_time_slide"], spec).plan
    assert all(layer.out_shape[1] == 1 for layer in plan if len(layer.out_shape) == 3)
    assert all(tuple(c["kernel"])[1] == 1 and tuple(c["pool"])[1] == 1
               for c in models["audio_kx1"]["conv"])
    assert all(tuple(c["kernel"])[0] == 1 and tuple(c["pool"])[0] == 1
               for c in models["audio_1xk"]["conv"])
    params = {name: count_parameters(build_model(m, spec)) for name, m in models.items()}
    assert max(params.values()) <= 1.25 * min(params.values()), params


def in_folder(folder: Path, monkeypatch, script: str, *overrides: str) -> int:
    """`python pipelines/<script>` run from `folder` (the config's relative paths land there),
    in process: its exit code."""
    monkeypatch.chdir(folder)
    return run_script(script, *overrides)


def test_prepare_stage_reports_a_missing_folder_in_one_line(tmp_path: Path, monkeypatch, capsys):
    code = in_folder(tmp_path, monkeypatch, "prepare_audio", "data.audio.source=folder")
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: data.audio.folder must name a folder of WAV files when data.audio.source=folder "
        "(e.g. data.audio.folder=path/to/recordings)"]
    assert not (tmp_path / "data").exists()


def test_prepare_stage_names_a_corrupt_wav(tmp_path: Path, monkeypatch, capsys):
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "3_ann_0.wav").write_bytes(b"RIFF not really")
    code = in_folder(tmp_path, monkeypatch, "prepare_audio", "data.audio.source=folder",
                     f"data.audio.folder={rec}")
    err = capsys.readouterr().err
    assert code == 2
    assert "3_ann_0.wav: unreadable or corrupt WAV" in err
    assert "Traceback" not in err


def test_results_stage_names_a_missing_metrics_file(tmp_path: Path, monkeypatch, capsys):
    assert in_folder(tmp_path, monkeypatch, "audio_results") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: metrics/audio/audio_freq_slide.json: metrics file is missing (run its train stage "
        "first)"]
