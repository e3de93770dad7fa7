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

from cnnlab.core.claims import read_claims
from cnnlab.data.prepared import load_prepared
from cnnlab.models import InputSpec, build_model, count_parameters
from cnnlab.training.checkpoint import load_checkpoint
from tests.conftest import TINY_TRAINER, compose_config
from tests.stages import run_stage

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

    for name in AUDIO:
        shrink = [f"train.{name}.trainer.{k}={v}" for k, v in {**TINY_TRAINER, "batch_size": 8}.items()]
        metrics = run_stage("train", f"run={name}", *paths, *shrink,
                            f"train.{name}.register_model=false").metrics
        assert metrics["epochs"] == 1
    model, meta = load_checkpoint(tmp_path / "models" / "audio_freq" / "model.ckpt")
    assert meta["classes"] == [str(d) for d in range(10)]
    assert model(data.test.x[:2]).shape == (2, 10)

    run_stage("audio_results", *paths)
    out = tmp_path / "reports" / "audio_results"
    saved = json.loads((out / "results.json").read_text())
    assert [r["experiment"] for r in saved["rows"]] == AUDIO
    claims = read_claims(out / "claims.json")
    assert claims[0].experiment == "audio_freq vs audio_time" and claims[0].holds is not None
    md = (out / "results.md").read_text()
    assert "nicolas" in md and "examples_classes.png" in md
    assert (out / "examples_speakers.png").is_file()


def test_model_configs_have_the_promised_geometry():
    """freq: every kernel and pool is k x 1; time: 1 x k; budgets within 25% of each other."""
    cfg = compose_config()
    feats = cfg["data"]["audio"]["features"]
    spec = InputSpec((1, feats["n_mels"], feats["frames"]), 10)
    models = {name: cfg["train"][name]["model"] for name in AUDIO}
    assert all(tuple(c["kernel"])[1] == 1 and tuple(c["pool"])[1] == 1
               for c in models["audio_freq"]["conv"])
    assert all(tuple(c["kernel"])[0] == 1 and tuple(c["pool"])[0] == 1
               for c in models["audio_time"]["conv"])
    params = {name: count_parameters(build_model(m, spec)) for name, m in models.items()}
    assert max(params.values()) <= 1.25 * min(params.values()), params


def run_script(script: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "pipelines" / script), *overrides],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_prepare_stage_reports_a_missing_folder_in_one_line(tmp_path: Path):
    proc = run_script("prepare_audio.py", "data.audio.source=folder", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: data.audio.folder must name a folder of WAV files when data.audio.source=folder "
        "(e.g. data.audio.folder=path/to/recordings)"]
    assert not (tmp_path / "data").exists()


def test_prepare_stage_names_a_corrupt_wav(tmp_path: Path):
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "3_ann_0.wav").write_bytes(b"RIFF not really")
    proc = run_script("prepare_audio.py", "data.audio.source=folder",
                     f"data.audio.folder={rec}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "3_ann_0.wav: unreadable or corrupt WAV" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_results_stage_names_a_missing_metrics_file(tmp_path: Path):
    proc = run_script("audio_results.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: metrics/audio/audio_freq.json: metrics file is missing (run its train stage first)"]
