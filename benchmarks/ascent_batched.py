"""Batched gradient ascent against a loop over one unit at a time.

All 50 filters of conv2 of the lecture CNN are maximised, the same number of Adam steps
each, once as ONE batch of 50 images and once as 50 separate runs of one image; both in one
process, side by side. Both reach the same activations (each image's objective depends on
that image alone; pixels differ only where float rounding flips Adam's normalised steps), so
the ratio is pure speed. Both are warmed up first (the first calls pick kernels). The
trained checkpoint is used when it exists, otherwise the same architecture with random
weights (the cost does not depend on the weights).

    python benchmarks/ascent_batched.py [--steps 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from cnnlab.analysis.ascent import AscentSettings, ascend, leaky, start_images, unit_objective
from cnnlab.models import InputSpec, build_model
from cnnlab.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
CNN = {"name": "convnet", "conv": [{"channels": 25, "kernel": 3}, {"channels": 50, "kernel": 3}],
       "downsample": "max", "pool": 2, "head": "flatten", "hidden": [100]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "models/mnist_cnn/model.ckpt"))
    parser.add_argument("--layer", default="conv2")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if Path(args.checkpoint).is_file():
        model, _ = load_checkpoint(args.checkpoint)
        source = args.checkpoint
    else:
        torch.manual_seed(0)
        model, source = build_model(CNN, InputSpec((1, 28, 28), 10)).eval(), "random weights"
    shape = (1, 28, 28)
    settings = AscentSettings(steps=args.steps, lr=0.1)
    n = int(dict(model.named_modules())[args.layer].out_channels)
    start = start_images(n, shape, settings)
    objective = leaky(0.01)

    warm = AscentSettings(steps=3, lr=0.1)  # first calls pick and cache kernels: not timed
    ascend(model, args.layer, unit_objective(range(n), objective), n, shape, warm, start=start)
    ascend(model, args.layer, unit_objective([0], objective), 1, shape, warm, start=start[:1])

    t0 = time.perf_counter()
    batched = ascend(model, args.layer, unit_objective(range(n), objective), n, shape, settings,
                     start=start)
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    looped = [ascend(model, args.layer, unit_objective([k], objective), 1, shape, settings,
                     start=start[k:k + 1]) for k in range(n)]
    t_looped = time.perf_counter() - t0

    looped_end = torch.cat([r.objective_end for r in looped])
    gap = float(((looped_end - batched.objective_end).abs()
                 / batched.objective_end.abs().clamp_min(1e-6)).max())
    print(f"{n} filters of {args.layer} ({source}), {args.steps} Adam steps each, "
          f"torch threads={torch.get_num_threads()}")
    print(f"  one batch of {n}:      {t_batched:7.3f} s")
    print(f"  {n} runs of one image: {t_looped:7.3f} s")
    print(f"  speed-up: {t_looped / t_batched:.1f}x   (activations reached differ by at most "
          f"{gap:.1%})")


if __name__ == "__main__":
    main()
