"""Accuracy of training recipes for the lecture CNN, without tracking (for a quick sweep).

    PYTHONPATH=src python benchmarks/recipe_check.py [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cnnlab.data.prepared import load_prepared
from cnnlab.models import InputSpec, build_model
from cnnlab.training.batches import TensorBatches, as_model_input

CNN = {"name": "convnet", "conv": [{"channels": 25, "kernel": 3}, {"channels": 50, "kernel": 3}],
       "downsample": "max", "pool": 2, "head": "flatten", "hidden": [100]}


def run(data, epochs: int, lr: float, schedule: str, seed: int, device: str, batch: int = 128) -> float:
    torch.manual_seed(seed)
    model = build_model(CNN, InputSpec((1, 28, 28), 10)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    batches = TensorBatches(data.train.x, data.train.y, batch, shuffle=True, seed=seed)
    sched = None
    if schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(batches))
    elif schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(batches))
    for _ in range(epochs):
        model.train()
        for x, y in batches:
            x, y = as_model_input(x.to(device)), y.to(device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched:
                sched.step()
    model.eval()
    with torch.no_grad():
        pred = model(as_model_input(data.test.x.to(device))).argmax(1).cpu()
    return float((pred == data.test.y).float().mean())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data/prepared/mnist")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    data = load_prepared(args.data)
    for epochs, lr, schedule in [(5, 1e-3, "none"), (4, 2e-3, "onecycle"), (5, 2e-3, "onecycle"),
                                 (3, 3e-3, "onecycle"), (5, 1e-3, "cosine"), (4, 3e-3, "onecycle")]:
        accs = []
        start = time.perf_counter()
        for seed in (42, 1, 2):
            accs.append(run(data, epochs, lr, schedule, seed, args.device))
        print(f"epochs={epochs} lr={lr} schedule={schedule}: test acc "
              f"{' '.join(f'{a:.4f}' for a in accs)} ({time.perf_counter() - start:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
