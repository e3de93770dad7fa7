"""The text claim's reason, tested directly: the embedding dimensions have no order.

Permute the dimensions of every word vector by one permutation (the same for every word),
and permute the trained model's input the same way wherever a weight reads a whole vector.
Kim's filters span the whole vector (h x D weights), so the permutation moves their weights
with the dimensions and nothing else changes: the accuracy must stay exactly as it was (the
logits up to float rounding). The 2-D filters slide along the embedding axis with the same
`width` weights at every offset: there is no per-dimension weight to move, so they see a
different input, and their accuracy changes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.models.text import BagOfVectors, KimCNN
from cnnlab.training.checkpoint import load_checkpoint


def permute_dimensions(model: nn.Module, order: torch.Tensor) -> nn.Module:
    """A copy of `model` reading word vectors whose dimension j is the old dimension order[j]:
    the embedding table's columns permuted, and the weights that read whole vectors (Kim's
    convolutions, the bag's output layer) permuted along the same axis."""
    if not hasattr(model, "embedding"):
        raise ConfigError(f"{type(model).__name__}: not a model over word vectors")
    out = copy.deepcopy(model)
    with torch.no_grad():
        out.embedding.weight.copy_(out.embedding.weight[:, order])
        if isinstance(out, KimCNN):
            for conv in out.convs:  # Conv1d(D, filters, h): weights filters x D x h
                conv.weight.copy_(conv.weight[:, order, :])
        elif isinstance(out, BagOfVectors):
            out.out.weight.copy_(out.out.weight[:, order])
    return out


def _logits(model: nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


def permutation_check(checkpoints: Mapping[str, Path], x: torch.Tensor, y: torch.Tensor,
                      permutations: int, seed: int) -> dict[str, dict[str, Any]]:
    """Per model: test accuracy as trained and under each of `permutations` seeded
    permutations, and the largest change of any logit."""
    if permutations < 1:
        raise ConfigError(f"analysis.text_results.permutations={permutations}: must be >= 1")
    generator = torch.Generator().manual_seed(seed)
    results = {}
    orders = None
    for name, path in checkpoints.items():
        model, _ = load_checkpoint(path)
        dim = model.embedding.embedding_dim
        orders = orders or [torch.randperm(dim, generator=generator) for _ in range(permutations)]
        base = _logits(model, x)
        accuracy = float((base.argmax(1) == y).float().mean())
        permuted, max_change = [], 0.0
        for order in orders:
            logits = _logits(permute_dimensions(model, order), x)
            permuted.append(float((logits.argmax(1) == y).float().mean()))
            max_change = max(max_change, float((logits - base).abs().max()))
        results[name] = {"accuracy": accuracy, "permuted": permuted,
                         "max_accuracy_change": max(abs(a - accuracy) for a in permuted),
                         "max_logit_change": max_change}
    return results
