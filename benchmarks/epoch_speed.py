"""Our in-memory tensor batches against a conventional per-sample Dataset + DataLoader.

The conventional pipeline is what torchvision's MNIST does: each item becomes a PIL image,
is converted to a float tensor (ToTensor) and normalised (Normalize) in Python, then the
batch is collated. Same model (the lecture CNN), same batch size, same batches, one process.
Two measurements, side by side: feeding batches alone, and full training steps.

    python benchmarks/epoch_speed.py [--batches 200] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cnnlab.data.prepared import load_prepared
from cnnlab.models import InputSpec, build_model
from cnnlab.training.batches import TensorBatches, as_model_input

ROOT = Path(__file__).resolve().parent.parent
CNN = {"name": "convnet", "conv": [{"channels": 25, "kernel": 3}, {"channels": 50, "kernel": 3}],
       "downsample": "max", "pool": 2, "head": "flatten", "hidden": [100]}


class PerSampleMNIST(Dataset):
    """One digit at a time, converted and normalised per item, as torchvision's MNIST does."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[i], mode="L")
        x = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)  # ToTensor
        x = x.view(1, 28, 28).float().div(255.0)
        x = (x - 0.1307) / 0.3081  # Normalize
        return x, int(self.labels[i])


def time_batches(batches, n_batches: int, step=None) -> float:
    """Seconds to draw `n_batches` batches, running `step(x, y)` on each if given."""
    start = time.perf_counter()
    for i, (x, y) in enumerate(batches):
        if i == n_batches:
            break
        if step is not None:
            step(x, y)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data/prepared/mnist"))
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    train = load_prepared(args.data).train
    model = build_model(CNN, InputSpec((1, 28, 28), 10))
    optimizer = torch.optim.Adam(model.parameters())

    def train_step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = torch.nn.functional.cross_entropy(model(as_model_input(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    ours = TensorBatches(train.x, train.y, args.batch_size, shuffle=True, seed=0)
    conventional = DataLoader(PerSampleMNIST(train.x[:, 0].numpy(), train.y.numpy()),
                              batch_size=args.batch_size, shuffle=True, num_workers=0)
    pipelines = {"tensor batches (ours)": ours, "per-sample DataLoader": conventional}
    time_batches(ours, 5, train_step)  # warm-up of the model's kernels
    print(f"{args.batches} batches of {args.batch_size}, torch threads={torch.get_num_threads()}")
    for what, step in (("feeding batches only", None), ("training steps", train_step)):
        seconds = {name: time_batches(b, args.batches, step) for name, b in pipelines.items()}
        ours_s, theirs_s = seconds["tensor batches (ours)"], seconds["per-sample DataLoader"]
        print(f"{what:22s} ours {ours_s:7.3f} s   per-sample {theirs_s:7.3f} s   "
              f"ratio {theirs_s / ours_s:6.1f}x")


if __name__ == "__main__":
    main()
