"""Our in-memory tensor batches against a conventional per-sample Dataset + DataLoader.

The conventional pipeline is what torchvision's MNIST does: each item is converted from a
PIL-like uint8 array to a float tensor (ToTensor) and normalised (Normalize) in Python, then
collated. Same model (the lecture CNN), same batch size, same number of batches, one process.

    python benchmarks/epoch_speed.py [--batches 200] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
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
        x = torch.from_numpy(self.images[i]).float().div(255.0).unsqueeze(0)  # ToTensor
        x = (x - 0.1307) / 0.3081  # Normalize
        return x, int(self.labels[i])


def time_epoch(batches, model, optimizer, n_batches: int, prepare) -> float:
    start = time.perf_counter()
    for i, (x, y) in enumerate(batches):
        if i == n_batches:
            break
        loss = torch.nn.functional.cross_entropy(model(prepare(x)), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
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

    ours = TensorBatches(train.x, train.y, args.batch_size, shuffle=True, seed=0)
    conventional = DataLoader(PerSampleMNIST(train.x[:, 0].numpy(), train.y.numpy()),
                              batch_size=args.batch_size, shuffle=True, num_workers=0)
    results = {}
    for name, batches in (("tensor batches (ours)", ours), ("per-sample DataLoader", conventional)):
        time_epoch(batches, model, optimizer, 5, as_model_input)  # warm-up
        results[name] = time_epoch(batches, model, optimizer, args.batches, as_model_input)
    for name, seconds in results.items():
        print(f"{name:24s} {seconds:7.2f} s for {args.batches} batches of {args.batch_size}")
    ratio = results["per-sample DataLoader"] / results["tensor batches (ours)"]
    print(f"speed-up: {ratio:.2f}x  (threads={torch.get_num_threads()})")


if __name__ == "__main__":
    main()
