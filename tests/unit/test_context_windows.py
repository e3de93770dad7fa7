"""The context-length experiment's windows and models, on tiny examples (no training)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.analysis.context import (
    cut_windows,
    summary_sentence,
    voiced_span,
    window_claim,
    window_models,
    window_starts,
    windowed,
)
from cnnlab.core.errors import ConfigError
from cnnlab.data.prepared import SPLITS, PreparedData, Split
from cnnlab.models import InputSpec, build_model, count_parameters
from tests.conftest import compose_config

pytestmark = pytest.mark.unit


def clip(loud: range, frames: int = 20, bands: int = 4, value: float = 1.0) -> torch.Tensor:
    """1 x bands x frames: silence (-1) but for the `loud` frames, each frame holding its
    own index so that a window shows where it was cut."""
    x = torch.full((1, bands, frames), -1.0)
    for t in loud:
        x[..., t] = value + t / 100
    return x


def test_the_voiced_span_is_the_loud_frames():
    assert voiced_span(clip(range(6, 14))) == (6, 13)


def test_windows_cover_the_word_inside_the_clip():
    # a word of 8 frames, windows of 4: two windows, side by side over the word
    assert window_starts((6, 13), 4, 20, max_windows=4) == [6, 10]
    # short windows: at most max_windows, spread over the word
    assert window_starts((6, 13), 2, 20, max_windows=2) == [7, 11]
    # near the edge a window moves inside the clip; a window as long as the clip is the clip
    assert window_starts((0, 3), 6, 20, 4) == [0]
    assert window_starts((17, 19), 6, 20, 4) == [14]
    assert window_starts((3, 9), 20, 20, 4) == [0]


def test_cut_windows_shapes_labels_and_contents():
    x = torch.stack([clip(range(6, 14)), clip(range(2, 5))])
    y = torch.tensor([7, 3])
    split, source = cut_windows(x, y, 4, max_windows=4)
    assert split.x.shape == (3, 1, 4, 4)  # two windows of the 8-frame word, one of the 3-frame
    assert split.y.tolist() == [7, 7, 3] and source.tolist() == [0, 0, 1]
    for window, i in zip(split.x, source.tolist(), strict=True):
        start = round(float(window[0, 0, 0] - 1) * 100) if window[0, 0, 0] > 0 else None
        if start is not None:  # a window starting on a loud frame is that clip's slice
            assert torch.equal(window, x[i, ..., start:start + 4])
    with pytest.raises(ConfigError, match="21 frames is not in 1..20"):
        cut_windows(x, y, 21, 4)


def test_no_window_crosses_from_one_split_into_another():
    """Every window of a split is a slice of one of that split's clips, never of another's."""
    def split(sign: float, n: int) -> Split:
        return Split(torch.stack([clip(range(3 + i, 15), value=sign * (i + 1)) for i in range(n)]),
                     torch.arange(n))

    data = PreparedData(split(1, 4), split(2, 2), split(-1, 3), {"classes": list("0123")})
    cut = windowed({name: getattr(data, name) for name in SPLITS}, 5, max_windows=3)
    for name, windows in cut.items():
        clips = getattr(data, name).x
        slices = {tuple(clips[i, ..., s:s + 5].flatten().tolist())
                  for i in range(len(clips)) for s in range(16)}
        assert all(tuple(w.flatten().tolist()) in slices for w in windows.x), name
    assert (cut["test"].x.amax(dim=(1, 2, 3)) < 0).all()  # the test windows: test clips only
    assert (cut["train"].x.amax(dim=(1, 2, 3)) > 0).all()


@pytest.mark.parametrize("k", [5, 11, 21, 41, 64])
def test_window_models_keep_their_axis_and_the_budget(k):
    cfg = compose_config()
    section = cfg["analysis"]["context_windows"]
    bands, frames = (cfg["data"]["audio"]["features"][key] for key in ("n_mels", "frames"))
    spec = InputSpec((1, bands, k), 10)
    names = [section[key] for key in ("frequency_only", "time_only", "image_cnn")]
    models = window_models(cfg["train"], names, frames, k, section["params"],
                           lambda m: count_parameters(build_model(m, spec)))
    freq, time_, square = (models[n] for n in names)
    assert list(freq["conv"][0]["kernel"]) == [5, k]  # spans the window: moves along frequency
    assert list(time_["conv"][0]["kernel"]) == [bands, min(5, k)]  # every band: along time
    for name, model in models.items():
        net = build_model(model, spec)  # the geometry fits the window
        assert net(torch.zeros(2, 1, bands, k)).shape == (2, 10)
        assert count_parameters(net) == pytest.approx(section["params"], rel=0.01), name
    plan = build_model(freq, spec).plan
    assert all(layer.out_shape[2] == 1 for layer in plan if len(layer.out_shape) == 3)
    plan = build_model(time_, spec).plan
    assert all(layer.out_shape[1] == 1 for layer in plan if len(layer.out_shape) == 3)


def test_a_budget_too_small_for_the_layers_is_one_config_error():
    cfg = compose_config()
    with pytest.raises(ConfigError, match="params=1,000: too small"):
        window_models(cfg["train"], ["audio_freq_slide"], 64, 11, 1000,
                      lambda m: count_parameters(build_model(m, InputSpec((1, 40, 11), 10))))


def result(verdict: str, diff: float = 0.01) -> dict:
    accuracy = {"f": [0.9, 0.8], "t": [0.8, 0.7], "s": [0.85, 0.8]}
    return {"params": {"f": 70_001, "t": 69_990, "s": 70_010},
            "unseen": {"accuracy": accuracy, "diff": diff, "se": 0.004, "verdict": verdict}}


def test_the_summary_says_where_frequency_wins_and_never_hides_a_loss():
    results = {"5": result("yes"), "11": result("not shown"), "64": result("no", -0.05)}
    assert summary_sentence(results, "unseen") == (
        "voices never heard in training: frequency-only wins at k = [5]; time-only wins at "
        "k = [64]; no difference shown at k = [11].")
    assert summary_sentence({"5": result("no", -0.05)}, "unseen").endswith(
        "frequency-only never wins; time-only wins at k = [5].")
    assert summary_sentence(results, "cross_gender") == (
        "trained on one gender, tested on the other (mean of both ways): not measurable on "
        "this data.")


def test_a_window_claim_carries_the_verdict_and_states_its_setting():
    claim = window_claim(11, result("yes", 0.1), "f", "t", unseen=True)
    assert (claim.label, claim.value, claim.experiment) == ("yes", 0.1, "f vs t, k=11")
    assert "windows of 11 frames" in claim.claim and "f 70,001" in claim.evidence
    known = window_claim(11, result("yes"), "f", "t", unseen=False)
    assert known.label == "not measurable" and "heard in training" in known.evidence
