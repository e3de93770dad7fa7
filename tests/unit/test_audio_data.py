"""Audio readers, bad files, labels, splits, waveform helpers, spectrogram features and the
config schema."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from omegaconf import OmegaConf

from cnnlab.core.errors import ConfigError, DataError
from cnnlab.core.stage import validate
from cnnlab.data.audio import shift
from cnnlab.data.audio.perturb import perturb, perturb_clips
from cnnlab.data.audio.prepare import AudioConfig, build, prepare
from cnnlab.data.audio.spectrogram import Spectrograms, normalize
from cnnlab.data.audio.split import split_indices
from cnnlab.data.audio.wav import Clip, fix_length, parse_name, read_folder, read_wav, resample
from tests.conftest import ROOT, compose_config

RATE = 8000


def tone(label: int, speaker: int = 0, seconds: float = 0.4, rate: int = RATE) -> np.ndarray:
    """A clip whose pitch says the label and whose timbre (a harmonic) says the speaker."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 200.0 + 150.0 * label
    wave = 0.5 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * f0 * (2 + speaker) * t)
    return (wave * np.hanning(len(t))).astype(np.float32)


def write_fsdd(folder: Path, speakers=("anna", "bob", "carl"), labels=range(3), takes=range(4),
               rate: int = RATE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for s, speaker in enumerate(speakers):
        for label in labels:
            for take in takes:
                sf.write(folder / f"{label}_{speaker}_{take}.wav", tone(label, s, rate=rate), rate,
                         subtype="PCM_16")
    return folder


@functools.cache
def _composed_audio() -> dict:
    return compose_config()["data"]["audio"]


def audio_cfg(**changes) -> dict:
    """The composed `data.audio` with `changes` merged in (nested sections key by key),
    checked against the schema as the stage contract does."""
    return validate(OmegaConf.merge(_composed_audio(), changes), AudioConfig, "data.audio")


def split_cfg(**changes) -> dict:
    return audio_cfg(split=changes)["split"]


def features_cfg(**changes) -> dict:
    return audio_cfg(features=changes)["features"]


NO_SHIFT = {"pitch_shift": {"semitones": []}}  # no pitch-shifted test clips: ~1 s a build saved


def folder_cfg(folder: Path, **extra) -> dict:
    return audio_cfg(**{
        "source": "folder", "folder": str(folder), "classes": ["0", "1", "2"],
        "sample_rate": RATE, "seed": 0,
        "split": {"by": "speaker", "test_speakers": ["carl"], "val_speakers": ["bob"]},
        "features": {"n_fft": 256, "hop_length": 128, "n_mels": 20, "frames": 16}, **extra})


# ------------------------------------------------------------- reading ----
def test_read_wav_gives_mono_float_samples_and_rate(tmp_path: Path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(1), RATE, subtype="PCM_16")
    wave, rate = read_wav(path)
    assert rate == RATE and wave.dtype == np.float32 and wave.ndim == 1
    assert np.allclose(wave, tone(1), atol=1e-4)


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b"RIFF\x00\x01garbage that is no wave at all" * 3), "corrupt"),
    (lambda p: p.write_bytes(b""), "corrupt"),
    (lambda p: sf.write(p, np.zeros((0, 1), np.float32), RATE), "empty"),
    (lambda p: sf.write(p, np.zeros(800, np.float32), RATE), "silent"),
    (lambda p: sf.write(p, np.stack([tone(0), tone(1)], axis=1), RATE), "2 channels"),
])
def test_bad_wav_is_a_data_error_naming_the_file(tmp_path: Path, make, words):
    path = tmp_path / "0_anna_0.wav"
    make(path)
    with pytest.raises(DataError, match=words) as err:
        read_wav(path)
    assert str(path) in str(err.value)


def test_file_names_give_label_speaker_and_take(tmp_path: Path):
    assert parse_name(tmp_path / "7_jackson_32.wav", tmp_path, "filename") == (
        "7", "jackson", "32")
    assert parse_name(tmp_path / "3_mary_ann_5.wav", tmp_path, "filename") == (
        "3", "mary_ann", "5")
    with pytest.raises(DataError, match="does not follow") as err:
        parse_name(tmp_path / "seven.wav", tmp_path, "filename")
    assert "seven.wav" in str(err.value)


def test_sub_folder_names_give_label_speaker_and_take(tmp_path: Path):
    parse = parse_name
    assert parse(tmp_path / "yes" / "0a7c2a8d_nohash_1.wav", tmp_path, "subfolder") == (
        "yes", "0a7c2a8d", "1")
    assert parse(tmp_path / "no" / "bob_3.wav", tmp_path, "subfolder") == ("no", "bob", "3")
    with pytest.raises(DataError, match="expected <label>/<file>.wav"):
        parse(tmp_path / "x" / "y" / "bob_3.wav", tmp_path, "subfolder")


def test_read_folder_reads_every_clip_with_labels(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec")
    clips, provenance = read_folder(folder_cfg(folder), ["0", "1", "2"])
    assert len(clips) == 3 * 3 * 4 == provenance["files_used"]
    assert {c.speaker for c in clips} == {"anna", "bob", "carl"}
    assert sorted({c.label for c in clips}) == [0, 1, 2]
    assert provenance["skipped"]["count"] == 0


def test_manifest_digest_changes_with_any_recording(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec")
    digest = read_folder(folder_cfg(folder), ["0", "1", "2"])[1]["folder_sha256"]
    assert read_folder(folder_cfg(folder), ["0", "1", "2"])[1]["folder_sha256"] == digest
    sf.write(folder / "1_bob_2.wav", 0.5 * tone(1), RATE)
    assert read_folder(folder_cfg(folder), ["0", "1", "2"])[1]["folder_sha256"] != digest


def test_read_folder_by_sub_folder_layout(tmp_path: Path):
    for word, label in (("yes", 0), ("no", 1)):
        (tmp_path / word).mkdir()
        for take in range(2):
            sf.write(tmp_path / word / f"abc123_nohash_{take}.wav", tone(label), RATE)
    clips, _ = read_folder(audio_cfg(folder=str(tmp_path), label_from="subfolder"),
                           ["yes", "no"])
    assert sorted((c.label, c.speaker, c.take) for c in clips) == [
        (0, "abc123", "0"), (0, "abc123", "1"), (1, "abc123", "0"), (1, "abc123", "1")]


def test_label_outside_the_classes_is_an_error_naming_the_file(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec", labels=range(4))
    with pytest.raises(DataError, match="label '3' is not one of") as err:
        read_folder(folder_cfg(folder), ["0", "1", "2"])
    assert "3_anna_0.wav" in str(err.value)


def test_skip_mode_warns_and_counts_every_bad_file(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec")
    (folder / "1_anna_9.wav").write_bytes(b"not a wave")
    sf.write(folder / "2_bob_9.wav", np.stack([tone(2), tone(2)], axis=1), RATE)
    sf.write(folder / "5_carl_9.wav", tone(1), RATE)  # a label outside the classes
    with pytest.warns(UserWarning, match="skipped 3 of 39"):
        clips, provenance = read_folder(folder_cfg(folder, on_bad_file="skip"),
                                        ["0", "1", "2"])
    assert len(clips) == 36
    skipped = provenance["skipped"]
    assert skipped["count"] == 3
    assert {Path(s["file"]).name for s in skipped["files"]} == {
        "1_anna_9.wav", "2_bob_9.wav", "5_carl_9.wav"}


def test_folder_config_errors_name_the_key_or_path(tmp_path: Path):
    with pytest.raises(ConfigError, match="data.audio.folder"):
        read_folder(audio_cfg(folder=None), ["0"])
    with pytest.raises(DataError, match="does not exist") as err:
        read_folder(audio_cfg(folder=str(tmp_path / "nowhere")), ["0"])
    assert "nowhere" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .wav files"):
        read_folder(audio_cfg(folder=str(tmp_path / "empty")), ["0"])
    with pytest.raises(ConfigError, match="data.audio.on_bad_file"):
        read_folder(audio_cfg(folder=str(tmp_path), on_bad_file="ignore"), ["0"])


# -------------------------------------------------------------- splits ----
def clips_of(speakers: list[str], takes: int = 5) -> list[Clip]:
    return [Clip(np.zeros(8, np.float32), RATE, label, s, str(t), f"{s}/{t}")
            for s in speakers for label in range(2) for t in range(takes)]


def test_split_by_speaker_keeps_held_out_speakers_out_of_training():
    clips = clips_of([f"v{i}" for i in range(12)])
    parts, info = split_indices(clips, split_cfg(by="speaker", test_speakers=3, val_speakers=2),
                                seed=0)
    speakers = {name: {clips[i].speaker for i in idx} for name, idx in parts.items()}
    assert len(speakers["test"]) == 3 and len(speakers["val"]) == 2
    assert not speakers["test"] & speakers["train"] and not speakers["val"] & speakers["train"]
    assert not speakers["test"] & speakers["val"]
    assert sorted(i for idx in parts.values() for i in idx) == list(range(len(clips)))
    assert info["speakers"]["test"] == sorted(speakers["test"])
    again, _ = split_indices(clips, split_cfg(by="speaker", test_speakers=3, val_speakers=2),
                             seed=0)
    other, _ = split_indices(clips, split_cfg(by="speaker", test_speakers=3, val_speakers=2),
                             seed=1)
    assert again == parts and other != parts


def test_split_by_named_speaker_draws_val_from_the_others():
    clips = clips_of(["george", "jackson", "lucas", "nicolas"], takes=10)
    parts, info = split_indices(clips, split_cfg(by="speaker", test_speakers=["nicolas"],
                                                 val_speakers=[], val_fraction=0.2), seed=0)
    assert {clips[i].speaker for i in parts["test"]} == {"nicolas"}
    assert "nicolas" not in {clips[i].speaker for i in parts["train"] + parts["val"]}
    assert len(parts["val"]) == round(0.2 * 60) and info["val_fraction"] == 0.2


def test_split_by_take_follows_the_fsdd_convention():
    clips = clips_of(["george", "jackson"], takes=50)
    parts, info = split_indices(clips, split_cfg(by="take", test_takes=[0, 1, 2, 3, 4],
                                                 val_takes=[5, 6]), seed=0)
    assert {clips[i].take for i in parts["test"]} == {"0", "1", "2", "3", "4"}
    assert {clips[i].take for i in parts["val"]} == {"5", "6"}
    assert len(parts["train"]) == 2 * 2 * 43
    assert info["test_takes"] == ["0", "1", "2", "3", "4"]


def test_bad_split_configs_name_the_key():
    clips = clips_of(["a", "b", "c"])
    with pytest.raises(ConfigError, match="test_speakers.*'zed'"):
        split_indices(clips, split_cfg(by="speaker", test_speakers=["zed"]), seed=0)
    with pytest.raises(ConfigError, match="test_speakers=3"):
        split_indices(clips, split_cfg(by="speaker", test_speakers=3), seed=0)
    with pytest.raises(ConfigError, match="split.by"):
        split_indices(clips, split_cfg(by="accent"), seed=0)
    with pytest.raises(ConfigError, match="test split is empty"):
        split_indices(clips, split_cfg(by="take", test_takes=[99]), seed=0)


# ----------------------------------------------------------- waveforms ----
def test_fix_length_pads_and_crops_around_the_centre():
    wave = np.arange(1, 6, dtype=np.float32)
    assert fix_length(wave, 9).tolist() == [0, 0, 1, 2, 3, 4, 5, 0, 0]
    assert fix_length(wave, 3).tolist() == [2, 3, 4]


def test_batched_resampling_equals_resampling_each_clip_alone():
    rng = np.random.default_rng(0)
    clips = [Clip(rng.standard_normal(n).astype(np.float32) * 0.1, 22050, 0, "s", "0", "")
             for n in (3000, 7000, 4410)]
    alone = [torchaudio.functional.resample(torch.from_numpy(c.wave), 22050, RATE).numpy()
             for c in clips]
    resample(clips, RATE)
    for clip, ref in zip(clips, alone, strict=True):
        assert clip.rate == RATE and len(clip.wave) == len(ref)
        assert np.allclose(clip.wave, ref, atol=1e-5)


def test_perturb_is_seeded_and_adds_noise_at_the_asked_snr():
    wave = fix_length(tone(2), 4000)
    cfg = {"snr_db": 10, "gain_db": 0, "shift_ms": 0}
    a = perturb(wave, RATE, np.random.default_rng(5), cfg, "t")
    b = perturb(wave, RATE, np.random.default_rng(5), cfg, "t")
    assert np.array_equal(a, b)
    noise = a - wave
    snr = 10 * np.log10(np.mean(wave ** 2) / np.mean(noise ** 2))
    assert abs(snr - 10) < 0.5
    with pytest.raises(ConfigError, match="t.snr_db"):
        perturb(wave, RATE, np.random.default_rng(0), {**cfg, "snr_db": [30, 10]}, "t")


def test_speed_perturbation_scales_frequency():
    t = np.arange(RATE) / RATE
    clip = Clip(np.sin(2 * np.pi * 500 * t).astype(np.float32), RATE, 0, "s", "0", "")
    perturb_clips([clip], RATE, RATE, np.random.default_rng(0),
                        {"speed": 1.2, "snr_db": 80, "gain_db": 0, "shift_ms": 0}, "t")
    spectrum = np.abs(np.fft.rfft(clip.wave))
    assert abs(np.argmax(spectrum) * RATE / RATE - 600) <= 2  # 500 Hz played 1.2x faster


# ------------------------------------------------------------ features ----
def test_spectrograms_have_frequency_rows_and_a_fixed_number_of_frames():
    features = Spectrograms(features_cfg(kind="mel", n_fft=256, hop_length=128, n_mels=32,
                                         frames=20), RATE)
    waves = np.stack([fix_length(tone(k), features.samples) for k in range(3)])
    x = features(waves)
    assert x.shape == (3, 1, 32, 20) and x.dtype == torch.float32
    # a higher tone lights a higher row: frequency runs up the height axis
    peak_rows = x[:, 0].mean(dim=2).argmax(dim=1).tolist()
    assert peak_rows == sorted(peak_rows) and peak_rows[0] < peak_rows[2]
    linear = Spectrograms(features_cfg(kind="linear", n_fft=256, hop_length=128, frames=20),
                          RATE)
    assert linear(waves).shape == (3, 1, 129, 20)


def test_each_clip_gets_its_own_db_floor():
    features = Spectrograms(features_cfg(n_mels=16, frames=12, top_db=60), RATE)
    loud = fix_length(tone(1), features.samples)
    quiet = loud * 1e-4
    together = features(np.stack([loud, quiet]))
    alone = features(quiet[None])
    assert torch.allclose(together[1], alone[0])
    assert together[1].max() - together[1].min() <= 60 + 1e-3


def test_normalisation_modes():
    x = {"train": torch.randn(4, 1, 5, 6) * 3 + 7, "test": torch.randn(2, 1, 5, 6) - 2}
    normalize(x, "per_clip")
    assert torch.allclose(x["test"].mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    x = {"train": torch.randn(4, 1, 5, 6) * 3 + 7}
    normalize(x, "per_band")
    assert torch.allclose(x["train"].mean(dim=3), torch.zeros(4, 1, 5), atol=1e-5)
    x = {"train": torch.randn(40, 1, 5, 6) * 3 + 7, "test": torch.randn(3, 1, 5, 6)}
    info = normalize(x, "global")
    assert len(info["band_mean"]) == 5
    assert torch.allclose(x["train"].mean(dim=(0, 1, 3)), torch.zeros(5), atol=1e-4)


def test_feature_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="data.audio.features.kind"):
        Spectrograms(features_cfg(kind="mfcc"), RATE)
    with pytest.raises(ConfigError, match="frames"):
        Spectrograms(features_cfg(frames=1), RATE)


# ------------------------------------------------------------- prepare ----
def test_prepare_folder_writes_the_prepared_format(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec")
    out = tmp_path / "prepared" / "audio"
    out.mkdir(parents=True)  # the stage contract hands prepare a fresh, empty folder
    manifest = prepare(folder_cfg(folder, augment={"copies": 1, "snr_db": 20}), out)
    assert manifest["input_shape"] == [1, 20, 16]
    assert manifest["sizes"] == {"train": 2 * 12, "val": 12, "test": 12}  # anna + 1 copy each
    assert manifest["split"]["speakers"] == {"train": ["anna"], "val": ["bob"],
                                             "test": ["carl"]}
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["files"].keys() == {"train.pt", "val.pt", "test.pt", "test_pitch_shift.pt"}
    blob = torch.load(out / "train.pt", weights_only=True)
    assert blob["x"].shape == (24, 1, 20, 16) and blob["y"].dtype == torch.int64
    assert (out / "examples_classes.png").stat().st_size > 0
    assert (out / "examples_speakers.png").stat().st_size > 0
    rows = (out / "clips.csv").read_text().splitlines()
    assert len(rows) == 1 + 48 and "augmented copy 1" in rows[24]


def test_trim_db_centres_the_word_not_the_recording(tmp_path: Path):
    folder = tmp_path / "rec"
    folder.mkdir()
    silence = np.zeros(int(0.5 * RATE), np.float32)
    for speaker in ("anna", "bob", "carl"):
        for label in range(3):
            sf.write(folder / f"{label}_{speaker}_0.wav", np.concatenate([silence, tone(label)]),
                     RATE)

    def loudness(**extra) -> float:
        waves = build(folder_cfg(folder, **extra, **NO_SHIFT)).clips["train"]
        return float(np.mean([np.sqrt(np.mean(c.wave ** 2)) for c in waves]))

    assert build(folder_cfg(folder, trim_db=30, **NO_SHIFT)).clips["train"][0].wave.shape == \
        build(folder_cfg(folder, **NO_SHIFT)).clips["train"][0].wave.shape
    assert loudness(trim_db=30) > 2 * loudness()  # the crop window now sits on the tone


def test_prepare_resamples_other_rates(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec", rate=16000)
    (tmp_path / "out").mkdir()
    manifest = prepare(folder_cfg(folder, **NO_SHIFT), tmp_path / "out")
    assert manifest["sample_rate"] == RATE and manifest["input_shape"] == [1, 20, 16]


def test_prepare_writes_into_the_given_folder_and_a_failure_writes_nothing(tmp_path: Path):
    """Publishing atomically is the stage contract's job: prepare fills the folder it is given."""
    folder = write_fsdd(tmp_path / "rec")
    out = tmp_path / "out"
    out.mkdir()
    (folder / "0_anna_99.wav").write_bytes(b"broken")
    with pytest.raises(DataError, match="0_anna_99.wav"):
        prepare(folder_cfg(folder), out)
    assert list(out.iterdir()) == []
    (folder / "0_anna_99.wav").unlink()
    prepare(folder_cfg(folder), out)
    assert sorted(p.name for p in out.iterdir()) == [
        "clips.csv", "examples_classes.png", "examples_speakers.png", "manifest.json", "test.pt",
        "test_pitch_shift.pt", "train.pt", "val.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "out", "rec"]  # the test's store


def test_config_errors_name_the_key(tmp_path: Path):
    with pytest.raises(ConfigError, match="data.audio.source"):
        build(audio_cfg(source="microphone"))
    with pytest.raises(ConfigError, match="data.audio.folder"):
        build(audio_cfg(source="folder", folder=None))


# -------------------------------------------------------------- schema ----
def test_the_schema_mirrors_the_yaml_key_for_key():
    """Every key of conf/data/audio.yaml is in the schema and every schema key in the YAML."""
    cfg = validate(OmegaConf.load(ROOT / "conf" / "data" / "audio.yaml"), AudioConfig,
                   "data.audio")
    assert cfg["sample_rate"] == 8000 and cfg["features"]["n_mels"] == 40
    assert cfg["split"]["test_takes"] == ["0", "1", "2", "3", "4"]  # takes are names


@pytest.mark.parametrize("change, key", [
    ({"features": {"n_mels": "many"}}, "data.audio.features.n_mels"),
    ({"sample_rate": "abc"}, "data.audio.sample_rate"),
    ({"mix_synthetic": "perhaps"}, "data.audio.mix_synthetic"),
    ({"split": {"val_fraction": [0.1]}}, "data.audio.split.val_fraction"),
    ({"features": {"nmels": 40}}, "data.audio.features.nmels"),
    ({"synthetic": {"noise": {"snr": 10}}}, "data.audio.synthetic.noise.snr"),
    ({"sample_rates": 16000}, "data.audio.sample_rates"),
])
def test_the_schema_rejects_a_wrong_type_or_an_unknown_key_naming_it(change, key):
    with pytest.raises(ConfigError, match=re.escape(key) + ":") as err:
        audio_cfg(**change)
    assert "\n" not in str(err.value)


def test_the_schema_rejects_a_missing_key():
    section = _composed_audio()
    cut = {**section, "features": {k: v for k, v in section["features"].items()
                                   if k != "top_db"}}
    with pytest.raises(ConfigError, match=r"^data\.audio\.features\.top_db: missing"):
        validate(cut, AudioConfig, "data.audio")


# ----------------------------------------------------------- synthetic ----
def synth_cfg(**synthetic) -> dict:
    """Five voices saying two words; `synthetic` changes keys of the synthetic section."""
    return audio_cfg(
        source="synthetic", classes=["0", "1"], seed=3,
        synthetic={"words": ["zero", "one"], "languages": ["en-us", "en"],
                   "variants": ["f1", "m3", "klatt", "whisper", "f3"], "takes": 2,
                   "rate": [140, 180], "pitch": [30, 70], "pitch_range": [30, 70], "trim_db": 40,
                   "noise": {"snr_db": [10, 30], "gain_db": [-3, 3], "shift_ms": 50},
                   **synthetic},
        split={"by": "speaker", "test_speakers": 2, "val_speakers": 1},
        features={"n_mels": 20, "frames": 24}, **NO_SHIFT)


def test_synthetic_voices_split_by_voice_and_are_deterministic():
    first = build(synth_cfg())
    again = build(synth_cfg())  # same process: eSpeak's hidden state must not leak
    speakers = first.manifest["split"]["speakers"]
    assert len(speakers["test"]) == 2 and len(speakers["val"]) == 1
    assert not set(speakers["test"]) & set(speakers["train"])
    assert not set(speakers["val"]) & set(speakers["train"])
    assert sum(len(s) for s in first.splits.values()) == 5 * 2 * 2
    for name in ("train", "val", "test"):
        assert torch.equal(first.splits[name].x, again.splits[name].x)
        assert torch.equal(first.splits[name].y, again.splits[name].y)
    assert first.manifest["input_shape"] == [1, 20, 24]
    assert {c.speaker for c in first.clips["test"]} == set(speakers["test"])


def test_synthetic_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="synthetic.variants.*nobody"):
        build(synth_cfg(variants=["f1", "nobody"]))
    with pytest.raises(ConfigError, match="synthetic.words"):
        build(synth_cfg(words=["zero"]))
    with pytest.raises(ConfigError, match="synthetic.languages"):
        build(synth_cfg(languages=["xx-nowhere"]))


def test_mixed_synthetic_voices_join_training_only(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec", labels=range(2))
    cfg = folder_cfg(folder, classes=["0", "1"], mix_synthetic=True, **NO_SHIFT,
                     synthetic=synth_cfg(variants=["f1", "m3"], takes=1)["synthetic"])
    dataset = build(cfg)
    speakers = dataset.manifest["split"]["speakers"]
    train_speakers = {c.speaker for c in dataset.clips["train"]}
    assert train_speakers == {"anna", "espeak-f1", "espeak-m3"}
    assert speakers["val"] == ["bob"] and speakers["test"] == ["carl"]
    assert dataset.manifest["mix_synthetic"]["clips"] == 2 * 2
    assert len(dataset.splits["train"]) == 2 * 4 + 4


# --------------------------------------------------------- pitch shift ----
def _peak_hz(wave: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


@pytest.mark.parametrize("semitones", [-4, 2, 4])
def test_pitch_shift_scales_every_frequency_and_keeps_the_duration(semitones):
    t = np.arange(RATE) / RATE
    wave = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)[None]
    cfg = audio_cfg()["pitch_shift"]
    shifted = shift.shift_waves(wave, semitones, cfg)
    assert shifted.shape == wave.shape
    assert _peak_hz(shifted[0, 1000:-1000]) == pytest.approx(440.0 * 2 ** (semitones / 12),
                                                             rel=0.01)
    assert shift.shift_waves(wave, 0, cfg) is wave


def test_prepare_writes_the_test_clips_shifted_and_normalised_as_the_test_split(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec")
    out = tmp_path / "prepared"
    out.mkdir()
    cfg = folder_cfg(folder, pitch_shift={"semitones": [3, -3, 0]},
                     features={"normalize": "global"})
    manifest = prepare(cfg, out)
    assert manifest["pitch_shift"]["semitones"] == [-3, 0, 3]
    blob = shift.load_shifted(out, json.loads((out / "manifest.json").read_text()))
    test = torch.load(out / "test.pt", weights_only=True)
    assert blob["semitones"].tolist() == [-3, 0, 3] and torch.equal(blob["y"], test["y"])
    assert blob["x"].shape == (3, *test["x"].shape)
    assert torch.equal(blob["x"][1], test["x"])  # the unshifted clips: the test split itself
    assert not torch.allclose(blob["x"][2], test["x"], atol=0.1)
    (out / shift.FILE).write_bytes(b"altered")
    with pytest.raises(DataError, match="sha256 does not match"):
        shift.load_shifted(out, manifest)


def test_no_grid_writes_no_shifted_clips_and_a_bad_grid_names_the_key(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec")
    (tmp_path / "a").mkdir()
    manifest = prepare(folder_cfg(folder, pitch_shift={"semitones": []}), tmp_path / "a")
    assert shift.FILE not in manifest["files"] and shift.load_shifted(tmp_path / "a", manifest) is None
    with pytest.raises(ConfigError, match=r"data\.audio\.pitch_shift\.semitones"):
        prepare(folder_cfg(folder, pitch_shift={"semitones": [0, 0]}), tmp_path / "b")
