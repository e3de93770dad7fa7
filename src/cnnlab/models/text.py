"""Text classifiers over word vectors: Kim's CNN, its 2-D contrast, and a bag of vectors.

Input is a batch of token ids (N x L, 0 = padding); the prepared dataset's extras carry the
initial vectors (`embeddings`, V x D). Every model starts with the same embedding layer:

- `rand`: learned from scratch (initialised at the scale of the given vectors),
- `static`: the given vectors, frozen,
- `nonstatic`: the given vectors, fine-tuned.

`kim` (Kim 2014) slides filters that span the whole embedding width along time only: a word
vector's dimensions are not ordered, so nothing is gained by sliding across them. `emb2d` is
the contrast that does: 2-D kernels over time x embedding, as for an image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cnnlab.core.errors import ConfigError
from cnnlab.models.registry import InputSpec, register

EMBEDDING_MODES = ("rand", "static", "nonstatic")


def text_embedding(cfg: Mapping[str, Any], spec: InputSpec) -> nn.Embedding:
    """The embedding layer of `cfg['embedding']`; padding (row 0) stays a zero vector."""
    name = cfg.get("name")
    if len(spec.input_shape) != 1:
        raise ConfigError(f"model {name!r} reads token ids (one sequence per example), but the "
                          f"dataset's input_shape is {list(spec.input_shape)}")
    vectors = spec.extras.get("embeddings")
    if vectors is None or vectors.ndim != 2:
        raise ConfigError(f"model {name!r} needs the dataset's extras 'embeddings' (V x D initial "
                          "vectors; prepare_text writes them)")
    mode = cfg.get("embedding", "nonstatic")
    if mode not in EMBEDDING_MODES:
        raise ConfigError(f"model.embedding={mode!r}: choose one of {list(EMBEDDING_MODES)}")
    vectors = vectors.float()
    if mode == "rand":
        embedding = nn.Embedding(*vectors.shape, padding_idx=0)
        with torch.no_grad():  # Kim's rule: random vectors with the pretrained ones' spread
            embedding.weight.normal_(0.0, float(vectors[1:].std()) if len(vectors) > 2 else 1.0)
            embedding.weight[0].zero_()
        return embedding
    return nn.Embedding.from_pretrained(vectors.clone(), freeze=mode == "static", padding_idx=0)


def text_lengths(ids: torch.Tensor) -> torch.Tensor:
    """Tokens per text (ids are padded at the end with 0)."""
    return (ids != 0).sum(dim=1)


def max_over_time(maps: torch.Tensor, lengths: torch.Tensor, window: int) -> torch.Tensor:
    """Max over the last axis of non-negative (post-ReLU) maps, counting only the positions of
    windows that start on a word of the text: the result does not depend on how much padding
    follows, so a text gets the same score alone, in any batch, at any max_len."""
    starts = torch.arange(maps.shape[-1], device=maps.device)
    valid = starts[None, :] < (lengths - window + 1).clamp(min=1)[:, None]
    shape = (len(lengths),) + (1,) * (maps.dim() - 2) + (maps.shape[-1],)
    return maps.masked_fill(~valid.view(shape), 0.0).amax(dim=-1)


def _windows(cfg: Mapping[str, Any], spec: InputSpec) -> list[int]:
    windows = [int(h) for h in cfg.get("windows", [3, 4, 5])]
    length = spec.input_shape[0]
    if not windows or min(windows) < 1 or max(windows) > length:
        raise ConfigError(f"model.windows={windows}: each must be between 1 and the sequence "
                          f"length {length} (data.text.max_len)")
    return windows


class KimCNN(nn.Module):
    """Embedding -> per window h: F filters of h words x the full embedding width, sliding over
    time -> ReLU -> max over time -> concatenate -> dropout -> dense output."""

    def __init__(self, embedding: nn.Embedding, windows: Sequence[int], filters: int,
                 dropout: float, num_classes: int) -> None:
        super().__init__()
        self.embedding = embedding
        width = embedding.embedding_dim
        # Conv1d over (N, D, L): each filter holds h x D weights, so it spans every dimension
        # and can only move along time.
        self.windows = list(windows)
        self.convs = nn.ModuleList(nn.Conv1d(width, filters, h) for h in windows)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(filters * len(windows), num_classes)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = text_lengths(ids)
        x = self.embedding(ids).transpose(1, 2)  # N x D x L
        return torch.cat([max_over_time(conv(x).relu(), lengths, h)
                          for conv, h in zip(self.convs, self.windows, strict=True)], dim=1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.features(ids)))


class Emb2dCNN(nn.Module):
    """Embedding as an L x D image -> per window h: C kernels of h words x `width` dimensions,
    sliding over time and along the embedding axis (step `stride`) -> ReLU -> max over time and
    over embedding positions -> concatenate -> hidden dense layers -> dropout -> output."""

    def __init__(self, embedding: nn.Embedding, windows: Sequence[int], channels: int,
                 width: int, stride: int, hidden: Sequence[int], dropout: float,
                 num_classes: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.width, self.stride = width, stride
        self.windows = list(windows)
        # A (h x width) 2-D kernel at every embedding offset is a Conv1d over time whose input
        # channels are `width` consecutive dimensions, applied to each offset as its own
        # sequence: the same weights slide along the embedding axis.
        self.convs = nn.ModuleList(nn.Conv1d(width, channels, h) for h in windows)
        layers: list[nn.Module] = []
        n_in = channels * len(windows)
        for size in hidden:
            layers += [nn.Linear(n_in, size), nn.ReLU()]
            n_in = size
        self.hidden = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(n_in, num_classes)

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        lengths = text_lengths(ids)
        x = self.embedding(ids)  # N x L x D
        patches = x.unfold(2, self.width, self.stride)  # N x L x P x width (P offsets)
        n, length, offsets, width = patches.shape
        seqs = patches.permute(0, 2, 3, 1).reshape(n, offsets, width, length)
        pooled = [max_over_time(conv(seqs.flatten(0, 1)).relu().view(n, offsets, -1, length - h + 1),
                                lengths, h).amax(dim=1)
                  for conv, h in zip(self.convs, self.windows, strict=True)]
        return torch.cat(pooled, dim=1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.hidden(self.features(ids))))


class BagOfVectors(nn.Module):
    """Mean of the non-padding word vectors -> dropout -> dense output: no word order at all."""

    def __init__(self, embedding: nn.Embedding, dropout: float, num_classes: int) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(embedding.embedding_dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).unsqueeze(2).float()
        summed = (self.embedding(ids) * mask).sum(dim=1)
        mean = summed / mask.sum(dim=1).clamp(min=1.0)
        return self.out(self.dropout(mean))


def _positive(cfg: Mapping[str, Any], key: str, default: int) -> int:
    value = int(cfg.get(key, default))
    if value < 1:
        raise ConfigError(f"model.{key}={value}: must be at least 1")
    return value


@register("kim")
def build_kim(cfg: Mapping[str, Any], spec: InputSpec) -> nn.Module:
    embedding = text_embedding(cfg, spec)
    return KimCNN(embedding, _windows(cfg, spec), _positive(cfg, "filters", 100),
                  float(cfg.get("dropout", 0.5)), spec.num_classes)


@register("emb2d")
def build_emb2d(cfg: Mapping[str, Any], spec: InputSpec) -> nn.Module:
    embedding = text_embedding(cfg, spec)
    width = _positive(cfg, "width", 5)
    stride = _positive(cfg, "stride", 1)
    if width > embedding.embedding_dim:
        raise ConfigError(f"model.width={width}: wider than the {embedding.embedding_dim} "
                          "embedding dimensions")
    return Emb2dCNN(embedding, _windows(cfg, spec), _positive(cfg, "channels", 100), width,
                    stride, [int(h) for h in cfg.get("hidden", [])],
                    float(cfg.get("dropout", 0.5)), spec.num_classes)


@register("bag")
def build_bag(cfg: Mapping[str, Any], spec: InputSpec) -> nn.Module:
    return BagOfVectors(text_embedding(cfg, spec), float(cfg.get("dropout", 0.0)),
                        spec.num_classes)
