"""Speech end to end on real recordings: a small FSDD subset through prepare, one epoch of each
speech model, and the results stage; plus the stage entry points' one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.analysis import speech
from cnnlab.core.claims import read_claims
from cnnlab.core.stage import validate
from cnnlab.data.audio.prepare import AudioConfig, prepare
from cnnlab.data.prepared import load_prepared
from cnnlab.training.checkpoint import load_checkpoint
from cnnlab.training.run import RunOutputs, train_experiment
from tests.conftest import TINY_TRAINER, compose_config

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


@needs_fsdd
def test_fsdd_subset_prepares_trains_and_reports(tmp_path: Path):
    cfg = compose_config(["data.audio.source=folder", f"data.audio.folder={tmp_path / 'rec'}",
                          "data.audio.split.test_speakers=[nicolas]",
                          "data.audio.split.val_speakers=0", "data.audio.split.val_fraction=0.2"])
    fsdd_subset(tmp_path / "rec")
    data_dir = tmp_path / "prepared" / "audio"
    data_dir.mkdir(parents=True)  # the stage contract hands prepare a fresh, empty folder
    manifest = prepare(validate(cfg["data"]["audio"], AudioConfig, "data.audio"), data_dir)
    assert manifest["sizes"] == {"train": 24, "val": 6, "test": 30}
    assert manifest["split"]["speakers"]["test"] == ["nicolas"]
    assert "nicolas" not in manifest["split"]["speakers"]["train"]
    data = load_prepared(data_dir)
    n_mels, frames = cfg["data"]["audio"]["features"]["n_mels"], \
        cfg["data"]["audio"]["features"]["frames"]
    assert data.input_shape == (1, n_mels, frames) and data.train.x.dtype == torch.float32
    assert torch.isfinite(data.train.x).all()

    metrics_dir = tmp_path / "metrics"
    for exp in speech.EXPERIMENTS:
        run_cfg = cfg["train"][exp.name]
        assert run_cfg["dataset"] == "audio"
        run_cfg["trainer"].update({**TINY_TRAINER, "batch_size": 8})
        run_cfg["register_model"] = False
        outputs = RunOutputs.under(tmp_path / "models", metrics_dir, tmp_path / "plots", exp.name)
        metrics = train_experiment(exp.name, run_cfg, data_dir, outputs)
        assert metrics["epochs"] == 1 and 0.0 <= metrics["test_acc"] <= 1.0
    model, meta = load_checkpoint(tmp_path / "models" / "audio_freq" / "model.ckpt")
    assert meta["classes"] == [str(d) for d in range(10)]
    assert model(data.test.x[:2]).shape == (2, 10)

    results = speech.write_speech_results(metrics_dir, data_dir / "manifest.json",
                                          tmp_path / "reports" / "audio")
    assert [r["experiment"] for r in results.rows] == [e.name for e in speech.EXPERIMENTS]
    claims = read_claims(tmp_path / "reports" / "audio" / "claims.json")
    assert claims[0].experiment == "audio_freq vs audio_time" and claims[0].holds is not None
    md = (tmp_path / "reports" / "audio" / "results.md").read_text()
    assert "nicolas" in md and "examples_classes.png" in md
    assert (tmp_path / "reports" / "audio" / "examples_speakers.png").is_file()
    saved = json.loads((tmp_path / "reports" / "audio" / "results.json").read_text())
    assert saved["rows"] == results.rows


def test_model_configs_have_the_promised_geometry():
    """freq: every kernel and pool is k x 1; time: 1 x k; budgets within 25% of each other."""
    from cnnlab.models import InputSpec, build_model, count_parameters

    cfg = compose_config()
    feats = cfg["data"]["audio"]["features"]
    spec = InputSpec((1, feats["n_mels"], feats["frames"]), 10)
    models = {e.role: cfg["train"][e.name]["model"] for e in speech.EXPERIMENTS}
    assert all(tuple(c["kernel"])[1] == 1 and tuple(c["pool"])[1] == 1
               for c in models["freq"]["conv"])
    assert all(tuple(c["kernel"])[0] == 1 and tuple(c["pool"])[0] == 1
               for c in models["time"]["conv"])
    params = {role: count_parameters(build_model(m, spec)) for role, m in models.items()}
    assert max(params.values()) <= 1.25 * min(params.values()), params


def run_stage(script: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "pipelines" / script), *overrides],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_prepare_stage_reports_a_missing_folder_in_one_line(tmp_path: Path):
    proc = run_stage("prepare_audio.py", "data.audio.source=folder", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: data.audio.folder must name a folder of WAV files when data.audio.source=folder "
        "(e.g. data.audio.folder=path/to/recordings)"]
    assert not (tmp_path / "data").exists()


def test_prepare_stage_names_a_corrupt_wav(tmp_path: Path):
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "3_ann_0.wav").write_bytes(b"RIFF not really")
    proc = run_stage("prepare_audio.py", "data.audio.source=folder",
                     f"data.audio.folder={rec}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "3_ann_0.wav: unreadable or corrupt WAV" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_results_stage_names_a_missing_metrics_file(tmp_path: Path):
    proc = run_stage("audio_results.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert "metrics/audio_freq.json: metrics file is missing" in proc.stderr
