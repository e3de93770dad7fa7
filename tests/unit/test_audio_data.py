"""Audio readers, bad files, labels, splits, waveform helpers and spectrogram features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from cnnlab.data import audio
from cnnlab.core.errors import ConfigError, DataError

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


def folder_cfg(folder: Path, **extra) -> dict:
    cfg = {"source": "folder", "folder": str(folder), "classes": ["0", "1", "2"],
           "sample_rate": RATE, "seed": 0,
           "split": {"by": "speaker", "test_speakers": ["carl"], "val_speakers": ["bob"]},
           "features": {"n_fft": 256, "hop_length": 128, "n_mels": 20, "frames": 16}}
    cfg.update(extra)
    return cfg


# ------------------------------------------------------------- reading ----
def test_read_wav_gives_mono_float_samples_and_rate(tmp_path: Path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(1), RATE, subtype="PCM_16")
    wave, rate = audio.read_wav(path)
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
        audio.read_wav(path)
    assert str(path) in str(err.value)


def test_file_names_give_label_speaker_and_take(tmp_path: Path):
    assert audio.parse_name(tmp_path / "7_jackson_32.wav", tmp_path, "filename") == (
        "7", "jackson", "32")
    assert audio.parse_name(tmp_path / "3_mary_ann_5.wav", tmp_path, "filename") == (
        "3", "mary_ann", "5")
    with pytest.raises(DataError, match="does not follow") as err:
        audio.parse_name(tmp_path / "seven.wav", tmp_path, "filename")
    assert "seven.wav" in str(err.value)


def test_sub_folder_names_give_label_speaker_and_take(tmp_path: Path):
    parse = audio.parse_name
    assert parse(tmp_path / "yes" / "0a7c2a8d_nohash_1.wav", tmp_path, "subfolder") == (
        "yes", "0a7c2a8d", "1")
    assert parse(tmp_path / "no" / "bob_3.wav", tmp_path, "subfolder") == ("no", "bob", "3")
    with pytest.raises(DataError, match="expected <label>/<file>.wav"):
        parse(tmp_path / "x" / "y" / "bob_3.wav", tmp_path, "subfolder")


def test_read_folder_reads_every_clip_with_labels(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec")
    clips, provenance = audio.read_folder(folder_cfg(folder), ["0", "1", "2"])
    assert len(clips) == 3 * 3 * 4 == provenance["files_used"]
    assert {c.speaker for c in clips} == {"anna", "bob", "carl"}
    assert sorted({c.label for c in clips}) == [0, 1, 2]
    assert provenance["skipped"]["count"] == 0


def test_manifest_digest_changes_with_any_recording(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec")
    digest = audio.read_folder(folder_cfg(folder), ["0", "1", "2"])[1]["folder_sha256"]
    assert audio.read_folder(folder_cfg(folder), ["0", "1", "2"])[1]["folder_sha256"] == digest
    sf.write(folder / "1_bob_2.wav", 0.5 * tone(1), RATE)
    assert audio.read_folder(folder_cfg(folder), ["0", "1", "2"])[1]["folder_sha256"] != digest


def test_read_folder_by_sub_folder_layout(tmp_path: Path):
    for word, label in (("yes", 0), ("no", 1)):
        (tmp_path / word).mkdir()
        for take in range(2):
            sf.write(tmp_path / word / f"abc123_nohash_{take}.wav", tone(label), RATE)
    clips, _ = audio.read_folder({"folder": str(tmp_path), "label_from": "subfolder"},
                                 ["yes", "no"])
    assert sorted((c.label, c.speaker, c.take) for c in clips) == [
        (0, "abc123", "0"), (0, "abc123", "1"), (1, "abc123", "0"), (1, "abc123", "1")]


def test_label_outside_the_classes_is_an_error_naming_the_file(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec", labels=range(4))
    with pytest.raises(DataError, match="label '3' is not one of") as err:
        audio.read_folder(folder_cfg(folder), ["0", "1", "2"])
    assert "3_anna_0.wav" in str(err.value)


def test_skip_mode_warns_and_counts_every_bad_file(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec")
    (folder / "1_anna_9.wav").write_bytes(b"not a wave")
    sf.write(folder / "2_bob_9.wav", np.stack([tone(2), tone(2)], axis=1), RATE)
    sf.write(folder / "5_carl_9.wav", tone(1), RATE)  # a label outside the classes
    with pytest.warns(UserWarning, match="skipped 3 of 39"):
        clips, provenance = audio.read_folder(folder_cfg(folder, on_bad_file="skip"),
                                              ["0", "1", "2"])
    assert len(clips) == 36
    skipped = provenance["skipped"]
    assert skipped["count"] == 3
    assert {Path(s["file"]).name for s in skipped["files"]} == {
        "1_anna_9.wav", "2_bob_9.wav", "5_carl_9.wav"}


def test_folder_config_errors_name_the_key_or_path(tmp_path: Path):
    with pytest.raises(ConfigError, match="data.audio.folder"):
        audio.read_folder({"folder": None}, ["0"])
    with pytest.raises(DataError, match="does not exist") as err:
        audio.read_folder({"folder": str(tmp_path / "nowhere")}, ["0"])
    assert "nowhere" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .wav files"):
        audio.read_folder({"folder": str(tmp_path / "empty")}, ["0"])
    with pytest.raises(ConfigError, match="data.audio.on_bad_file"):
        audio.read_folder({"folder": str(tmp_path), "on_bad_file": "ignore"}, ["0"])


# -------------------------------------------------------------- splits ----
def clips_of(speakers: list[str], takes: int = 5) -> list[audio.Clip]:
    return [audio.Clip(np.zeros(8, np.float32), RATE, label, s, str(t), f"{s}/{t}")
            for s in speakers for label in range(2) for t in range(takes)]


def test_split_by_speaker_keeps_held_out_speakers_out_of_training():
    clips = clips_of([f"v{i}" for i in range(12)])
    parts, info = audio.split_indices(clips, {"by": "speaker", "test_speakers": 3,
                                              "val_speakers": 2}, seed=0)
    speakers = {name: {clips[i].speaker for i in idx} for name, idx in parts.items()}
    assert len(speakers["test"]) == 3 and len(speakers["val"]) == 2
    assert not speakers["test"] & speakers["train"] and not speakers["val"] & speakers["train"]
    assert not speakers["test"] & speakers["val"]
    assert sorted(i for idx in parts.values() for i in idx) == list(range(len(clips)))
    assert info["speakers"]["test"] == sorted(speakers["test"])
    again, _ = audio.split_indices(clips, {"by": "speaker", "test_speakers": 3,
                                           "val_speakers": 2}, seed=0)
    other, _ = audio.split_indices(clips, {"by": "speaker", "test_speakers": 3,
                                           "val_speakers": 2}, seed=1)
    assert again == parts and other != parts


def test_split_by_named_speaker_draws_val_from_the_others():
    clips = clips_of(["george", "jackson", "lucas", "nicolas"], takes=10)
    parts, info = audio.split_indices(clips, {"by": "speaker", "test_speakers": ["nicolas"],
                                              "val_speakers": [], "val_fraction": 0.2}, seed=0)
    assert {clips[i].speaker for i in parts["test"]} == {"nicolas"}
    assert "nicolas" not in {clips[i].speaker for i in parts["train"] + parts["val"]}
    assert len(parts["val"]) == round(0.2 * 60) and info["val_fraction"] == 0.2


def test_split_by_take_follows_the_fsdd_convention():
    clips = clips_of(["george", "jackson"], takes=50)
    parts, info = audio.split_indices(clips, {"by": "take", "test_takes": [0, 1, 2, 3, 4],
                                              "val_takes": [5, 6]}, seed=0)
    assert {clips[i].take for i in parts["test"]} == {"0", "1", "2", "3", "4"}
    assert {clips[i].take for i in parts["val"]} == {"5", "6"}
    assert len(parts["train"]) == 2 * 2 * 43
    assert info["test_takes"] == ["0", "1", "2", "3", "4"]


def test_bad_split_configs_name_the_key():
    clips = clips_of(["a", "b", "c"])
    with pytest.raises(ConfigError, match="test_speakers.*'zed'"):
        audio.split_indices(clips, {"by": "speaker", "test_speakers": ["zed"]}, seed=0)
    with pytest.raises(ConfigError, match="test_speakers=3"):
        audio.split_indices(clips, {"by": "speaker", "test_speakers": 3}, seed=0)
    with pytest.raises(ConfigError, match="split.by"):
        audio.split_indices(clips, {"by": "accent"}, seed=0)
    with pytest.raises(ConfigError, match="test split is empty"):
        audio.split_indices(clips, {"by": "take", "test_takes": [99]}, seed=0)


# ----------------------------------------------------------- waveforms ----
def test_fix_length_pads_and_crops_around_the_centre():
    wave = np.arange(1, 6, dtype=np.float32)
    assert audio.fix_length(wave, 9).tolist() == [0, 0, 1, 2, 3, 4, 5, 0, 0]
    assert audio.fix_length(wave, 3).tolist() == [2, 3, 4]


def test_batched_resampling_equals_resampling_each_clip_alone():
    rng = np.random.default_rng(0)
    clips = [audio.Clip(rng.standard_normal(n).astype(np.float32) * 0.1, 22050, 0, "s", "0", "")
             for n in (3000, 7000, 4410)]
    alone = [torchaudio.functional.resample(torch.from_numpy(c.wave), 22050, RATE).numpy()
             for c in clips]
    audio.resample(clips, RATE)
    for clip, ref in zip(clips, alone, strict=True):
        assert clip.rate == RATE and len(clip.wave) == len(ref)
        assert np.allclose(clip.wave, ref, atol=1e-5)


def test_perturb_is_seeded_and_adds_noise_at_the_asked_snr():
    wave = audio.fix_length(tone(2), 4000)
    cfg = {"snr_db": 10, "gain_db": 0, "shift_ms": 0}
    a = audio.perturb(wave, RATE, np.random.default_rng(5), cfg, "t")
    b = audio.perturb(wave, RATE, np.random.default_rng(5), cfg, "t")
    assert np.array_equal(a, b)
    noise = a - wave
    snr = 10 * np.log10(np.mean(wave ** 2) / np.mean(noise ** 2))
    assert abs(snr - 10) < 0.5
    with pytest.raises(ConfigError, match="t.snr_db"):
        audio.perturb(wave, RATE, np.random.default_rng(0), {"snr_db": [30, 10]}, "t")


def test_speed_perturbation_scales_frequency():
    t = np.arange(RATE) / RATE
    clip = audio.Clip(np.sin(2 * np.pi * 500 * t).astype(np.float32), RATE, 0, "s", "0", "")
    audio.perturb_clips([clip], RATE, RATE, np.random.default_rng(0),
                        {"speed": 1.2, "snr_db": 80, "gain_db": 0, "shift_ms": 0}, "t")
    spectrum = np.abs(np.fft.rfft(clip.wave))
    assert abs(np.argmax(spectrum) * RATE / RATE - 600) <= 2  # 500 Hz played 1.2x faster


# ------------------------------------------------------------ features ----
def test_spectrograms_have_frequency_rows_and_a_fixed_number_of_frames():
    features = audio.Spectrograms({"kind": "mel", "n_fft": 256, "hop_length": 128,
                                   "n_mels": 32, "frames": 20}, RATE)
    waves = np.stack([audio.fix_length(tone(k), features.samples) for k in range(3)])
    x = features(waves)
    assert x.shape == (3, 1, 32, 20) and x.dtype == torch.float32
    # a higher tone lights a higher row: frequency runs up the height axis
    peak_rows = x[:, 0].mean(dim=2).argmax(dim=1).tolist()
    assert peak_rows == sorted(peak_rows) and peak_rows[0] < peak_rows[2]
    linear = audio.Spectrograms({"kind": "linear", "n_fft": 256, "hop_length": 128,
                                 "frames": 20}, RATE)
    assert linear(waves).shape == (3, 1, 129, 20)


def test_each_clip_gets_its_own_db_floor():
    features = audio.Spectrograms({"n_mels": 16, "frames": 12, "top_db": 60}, RATE)
    loud = audio.fix_length(tone(1), features.samples)
    quiet = loud * 1e-4
    together = features(np.stack([loud, quiet]))
    alone = features(quiet[None])
    assert torch.allclose(together[1], alone[0])
    assert together[1].max() - together[1].min() <= 60 + 1e-3


def test_normalisation_modes():
    x = {"train": torch.randn(4, 1, 5, 6) * 3 + 7, "test": torch.randn(2, 1, 5, 6) - 2}
    audio.normalize(x, "per_clip")
    assert torch.allclose(x["test"].mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    x = {"train": torch.randn(4, 1, 5, 6) * 3 + 7}
    audio.normalize(x, "per_band")
    assert torch.allclose(x["train"].mean(dim=3), torch.zeros(4, 1, 5), atol=1e-5)
    x = {"train": torch.randn(40, 1, 5, 6) * 3 + 7, "test": torch.randn(3, 1, 5, 6)}
    info = audio.normalize(x, "global")
    assert len(info["band_mean"]) == 5
    assert torch.allclose(x["train"].mean(dim=(0, 1, 3)), torch.zeros(5), atol=1e-4)


def test_feature_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="data.audio.features.kind"):
        audio.Spectrograms({"kind": "mfcc"}, RATE)
    with pytest.raises(ConfigError, match="frames"):
        audio.Spectrograms({"frames": 1}, RATE)


# ------------------------------------------------------------- prepare ----
def test_prepare_folder_writes_the_prepared_format(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec")
    out = tmp_path / "prepared" / "audio"
    manifest = audio.prepare(folder_cfg(folder, augment={"copies": 1, "snr_db": 20}), out)
    assert manifest["input_shape"] == [1, 20, 16]
    assert manifest["sizes"] == {"train": 2 * 12, "val": 12, "test": 12}  # anna + 1 copy each
    assert manifest["split"]["speakers"] == {"train": ["anna"], "val": ["bob"],
                                             "test": ["carl"]}
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["files"].keys() == {"train.pt", "val.pt", "test.pt"}
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
        waves = audio.build(folder_cfg(folder, **extra)).clips["train"]
        return float(np.mean([np.sqrt(np.mean(c.wave ** 2)) for c in waves]))

    assert audio.build(folder_cfg(folder, trim_db=30)).clips["train"][0].wave.shape == \
        audio.build(folder_cfg(folder)).clips["train"][0].wave.shape
    assert loudness(trim_db=30) > 2 * loudness()  # the crop window now sits on the tone


def test_prepare_resamples_other_rates(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec", rate=16000)
    manifest = audio.prepare(folder_cfg(folder), tmp_path / "out")
    assert manifest["sample_rate"] == RATE and manifest["input_shape"] == [1, 20, 16]


def test_a_failed_prepare_keeps_the_previous_output(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec")
    out = tmp_path / "out"
    audio.prepare(folder_cfg(folder), out)
    before = (out / "train.pt").read_bytes()
    (folder / "0_anna_99.wav").write_bytes(b"broken")
    with pytest.raises(DataError, match="0_anna_99.wav"):
        audio.prepare(folder_cfg(folder), out)
    assert (out / "train.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "rec"]  # no temp dirs left


def test_config_errors_name_the_key(tmp_path: Path):
    with pytest.raises(ConfigError, match="data.audio.source"):
        audio.build({"source": "microphone"})
    with pytest.raises(ConfigError, match="data.audio.folder"):
        audio.build({"source": "folder", "folder": None})


# ----------------------------------------------------------- synthetic ----
SYNTH = {"source": "synthetic", "classes": ["0", "1"], "seed": 3,
         "synthetic": {"words": ["zero", "one"], "languages": ["en-us", "en"],
                       "variants": ["f1", "m3", "klatt", "whisper", "f3"], "takes": 2,
                       "rate": [140, 180], "pitch": [30, 70], "pitch_range": [30, 70],
                       "trim_db": 40,
                       "noise": {"snr_db": [10, 30], "gain_db": [-3, 3], "shift_ms": 50}},
         "split": {"by": "speaker", "test_speakers": 2, "val_speakers": 1},
         "features": {"n_mels": 20, "frames": 24}}


def test_synthetic_voices_split_by_voice_and_are_deterministic():
    first = audio.build(SYNTH)
    again = audio.build(SYNTH)  # same process: eSpeak's hidden state must not leak
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
    bad_variant = {**SYNTH, "synthetic": {**SYNTH["synthetic"], "variants": ["f1", "nobody"]}}
    with pytest.raises(ConfigError, match="synthetic.variants.*nobody"):
        audio.build(bad_variant)
    bad_words = {**SYNTH, "synthetic": {**SYNTH["synthetic"], "words": ["zero"]}}
    with pytest.raises(ConfigError, match="synthetic.words"):
        audio.build(bad_words)
    bad_lang = {**SYNTH, "synthetic": {**SYNTH["synthetic"], "languages": ["xx-nowhere"]}}
    with pytest.raises(ConfigError, match="synthetic.languages"):
        audio.build(bad_lang)


def test_mixed_synthetic_voices_join_training_only(tmp_path: Path):
    folder = write_fsdd(tmp_path / "rec", labels=range(2))
    cfg = folder_cfg(folder, classes=["0", "1"], mix_synthetic=True,
                     synthetic={**SYNTH["synthetic"], "variants": ["f1", "m3"], "takes": 1})
    dataset = audio.build(cfg)
    speakers = dataset.manifest["split"]["speakers"]
    train_speakers = {c.speaker for c in dataset.clips["train"]}
    assert train_speakers == {"anna", "espeak-f1", "espeak-m3"}
    assert speakers["val"] == ["bob"] and speakers["test"] == ["carl"]
    assert dataset.manifest["mix_synthetic"]["clips"] == 2 * 2
    assert len(dataset.splits["train"]) == 2 * 4 + 4
