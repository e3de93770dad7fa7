"""Top-3 classes with probabilities for your own files, preprocessed as in training.

    python -m cnnlab predict mnist_cnn digit.png photo.jpg
    python -m cnnlab predict audio_full2d:2 one.wav two.flac --json
    python -m cnnlab predict models:/text_kim_static/latest reviews.txt

MODEL is an experiment (its checkpoint under paths.models) or a registered MLflow model
(name:version, models:/name/version|latest, models:/name@alias). Images are PNG/JPEG digits,
recordings WAV/FLAC, text files hold one review a line. `--request` prints the preprocessed
inputs as the JSON body `mlflow models serve` takes, instead of predicting.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from cnnlab.predict.inputs import Example, domain_for
from cnnlab.predict.models import Model, resolve
from cnnlab.training.batches import as_model_input

TOP = 3  # classes shown per input (the contract, not a tunable)
BATCH = 256  # inputs per forward pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="experiment name, name:version or models:/name/version")
    parser.add_argument("files", nargs="+", type=Path, help="images, recordings or text files")
    parser.add_argument("--json", action="store_true", help="print the predictions as JSON")
    parser.add_argument("--request", action="store_true",
                        help="print the MLflow serving request body for the files, not predictions")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hydra override of conf/ (e.g. paths.prepared=elsewhere); repeatable")


def compose(overrides: list[str]) -> tuple[dict[str, Any], Path]:
    """conf/ composed with `overrides`, and the project root its relative paths start from."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from cnnlab.core.errors import ConfigError
    from cnnlab.core.stage import conf_dir

    conf = conf_dir()
    try:
        with initialize_config_dir(str(conf), version_base="1.3"):
            cfg = hydra_compose("config", overrides=overrides)
    except HydraException as exc:
        where = " ".join(overrides) or conf / "config.yaml"
        raise ConfigError(f"{where}: {str(exc).splitlines()[0]}") from None
    return OmegaConf.to_container(cfg, resolve=True), conf.parent


def probabilities(model: Model, x: torch.Tensor) -> torch.Tensor:
    """Softmax of the model's logits, in batches, on model inputs made as in evaluation."""
    out = [model.logits(as_model_input(x[i:i + BATCH].clone())) for i in range(0, len(x), BATCH)]
    return torch.softmax(torch.cat(out).double(), dim=1)


def report(model: Model, examples: list[Example], probs: torch.Tensor) -> dict[str, Any]:
    """Everything printed, as one JSON-ready dict."""
    top = probs.topk(min(TOP, probs.shape[1]), dim=1)
    return {"model": model.name, "source": model.source, "data": str(model.data_dir),
            "predictions": [{"input": ex.name,
                             "top": [{"class": model.classes[int(i)], "probability": float(p)}
                                     for p, i in zip(values, indices, strict=True)],
                             **ex.notes}
                            for ex, values, indices in zip(examples, top.values, top.indices,
                                                           strict=True)]}


def _line(pred: dict[str, Any]) -> str:
    tops = ", ".join(f"{t['class']} {t['probability']:.2%}" for t in pred["top"])
    notes = []
    if "converted_from" in pred:
        notes.append(f"converted from {pred['converted_from']}")
    if "resampled_from_hz" in pred:
        notes.append(f"resampled from {pred['resampled_from_hz']} Hz")
    if pred.get("unknown_words"):
        notes.append(f"{pred['unknown_words']} unknown words: {', '.join(pred['unknown'])}")
    if "truncated_to" in pred:
        notes.append(f"cut to {pred['truncated_to']} tokens")
    return f"{pred['input']}: {tops}" + (f"  [{'; '.join(notes)}]" if notes else "")


def run(args: argparse.Namespace) -> int:
    cfg, root = compose(args.override)
    paths = {k: root / v for k, v in cfg["paths"].items()}
    model = resolve(args.model, cfg["train"], paths["models"], paths["prepared"])
    domain = domain_for(model.data_dir, model.manifest)
    examples = [ex for path in args.files for ex in domain.read(path)]
    x = torch.stack([ex.x for ex in examples])
    if args.request:
        print(json.dumps({"inputs": as_model_input(x).tolist()}))
        return 0
    result = report(model, examples, probabilities(model, x))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['model']} ({result['source']}) on {result['data']}")
        for pred in result["predictions"]:
            print(_line(pred))
    return 0
