"""The image network that Deep Dream and style transfer look through, and the photos they use.

Two backbones, one interface (`features(x, layers) -> {layer: activation}`, x an RGB batch in
[0, 1]):

- `random` (the offline default): a stack of multi-scale convolution blocks with seeded,
  He-initialised random weights. No download is needed, and random multi-scale filters are
  known to capture texture statistics well enough for Gram-matrix style transfer.
- `vgg19`: torchvision's VGG19 `features` stack rebuilt in plain torch, with weights read
  from a local state_dict file (keys `0.weight`, `0.bias`, ... or `features.0.weight`, ...).

Layer names: random `conv1, relu1, pool1, conv2, ...`; vgg19 `conv1_1, relu1_1, conv1_2,
relu1_2, pool1, conv2_1, ...` (the names of the style-transfer literature); both also have
`input`, the normalised pixels (whose Gram matrix is the colour covariance).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.core.errors import CheckpointError, ConfigError, DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's configuration "E": channels per conv, "M" a 2x2 max pool.
VGG19_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                       512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class MultiScaleConv(nn.Module):
    """Parallel convolutions of several kernel sizes ('same' padding), outputs concatenated."""

    def __init__(self, c_in: int, c_per_kernel: int, kernels: Sequence[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(c_in, c_per_kernel, k, padding=k // 2)
                                      for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class Backbone(nn.Module):
    """A named-layer feature extractor on RGB images in [0, 1] (normalised inside)."""

    def __init__(self, layers: OrderedDict[str, nn.Module], kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.layer_names = ["input", *layers]
        self.body = nn.Sequential(layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def check_layers(self, layers: Sequence[str]) -> None:
        unknown = [name for name in layers if name not in self.layer_names]
        if unknown:
            raise ConfigError(f"{self.kind} backbone has no layer {unknown}; "
                              f"choose from {self.layer_names}")

    def features(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations of `layers` for images `x`; stops after the deepest one requested."""
        self.check_layers(layers)
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        h = (x - self.mean) / self.std
        if "input" in wanted:
            out["input"] = h
            if len(out) == len(wanted):
                return out
        for name, module in self.body.named_children():
            h = module(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


def random_backbone(channels: Sequence[int] = (16, 32, 64), kernels: Sequence[int] = (3, 5, 7),
                    seed: int = 0, pool: str = "avg") -> Backbone:
    """Multi-scale random CNN: block i = MultiScaleConv(channels[i] per kernel) -> ReLU -> pool.

    Weights are He-normal (fan-in, ReLU gain) from a private generator, so the same seed gives
    the same network whatever the global RNG state; biases are zero.
    """
    if not channels or not kernels or min(channels) < 1 or min(kernels) < 1:
        raise ConfigError(f"random backbone needs positive channels and kernels, got "
                          f"channels={list(channels)} kernels={list(kernels)}")
    if any(k % 2 == 0 for k in kernels):
        raise ConfigError(f"random backbone kernels must be odd (same padding), "
                          f"got {list(kernels)}")
    if pool not in ("avg", "max"):
        raise ConfigError(f"random backbone pool must be avg or max, got {pool!r}")
    gen = torch.Generator().manual_seed(int(seed))
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = 3
    for i, c in enumerate(channels, start=1):
        block = MultiScaleConv(c_in, int(c), kernels)
        with torch.no_grad():
            for conv in block.branches:
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen)
                                  * (2.0 / fan_in) ** 0.5)
                conv.bias.zero_()
        layers[f"conv{i}"] = block
        layers[f"relu{i}"] = nn.ReLU()
        layers[f"pool{i}"] = nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2)
        c_in = int(c) * len(kernels)
    return Backbone(layers, "random").eval().requires_grad_(False)


def _vgg19_layers() -> tuple[OrderedDict[str, nn.Module], dict[str, str]]:
    """The VGG19 features stack by name, and torchvision's index -> our name."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    index_to_name: dict[str, str] = {}
    block, conv, c_in, index = 1, 1, 3, 0
    for item in VGG19_LAYOUT:
        if item == "M":
            layers[f"pool{block}"] = nn.MaxPool2d(2, 2)
            block, conv, index = block + 1, 1, index + 1
            continue
        name = f"conv{block}_{conv}"
        layers[name] = nn.Conv2d(c_in, int(item), 3, padding=1)
        layers[f"relu{block}_{conv}"] = nn.ReLU()
        index_to_name[str(index)] = name
        c_in, conv, index = int(item), conv + 1, index + 2
    return layers, index_to_name


def vgg19_backbone(weights: str | Path) -> Backbone:
    """VGG19 features with weights from a local state_dict of torchvision's `vgg19().features`."""
    path = Path(weights)
    if not path.is_file():
        raise CheckpointError(f"{path}: VGG19 weights file is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt file raises many types
        raise CheckpointError(f"{path}: not a readable torch state_dict "
                              f"({type(exc).__name__})") from exc
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state_dict (name -> tensor), "
                              f"got {type(state).__name__}")
    layers, index_to_name = _vgg19_layers()
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = str(key).removeprefix("features.")
        index, _, param = key.partition(".")
        if index in index_to_name and param in ("weight", "bias"):
            renamed[f"body.{index_to_name[index]}.{param}"] = value
    model = Backbone(layers, "vgg19")
    expected = {k for k in model.state_dict() if k.startswith("body.")}
    missing = sorted(expected - set(renamed))
    if missing:
        raise CheckpointError(f"{path}: not VGG19 features weights; {len(missing)} of "
                              f"{len(expected)} tensors missing (e.g. {missing[0]})")
    try:
        model.load_state_dict(renamed, strict=False)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise CheckpointError(f"{path}: VGG19 weights do not fit ({first})") from exc
    return model.eval().requires_grad_(False)


@dataclass
class BackboneConfig:
    """`backbone` of analysis.deepdream and analysis.style."""

    kind: str  # random | vgg19
    weights: str | None  # vgg19: a local state_dict file
    seed: int
    channels: list[int]
    kernels: list[int]
    pool: str


def build_backbone(cfg: Mapping[str, Any]) -> Backbone:
    """`cfg`: a BackboneConfig as a dict."""
    kind = cfg["kind"]
    if kind == "random":
        return random_backbone(cfg["channels"], cfg["kernels"], int(cfg["seed"]), cfg["pool"])
    if kind == "vgg19":
        if not cfg.get("weights"):
            raise ConfigError("backbone.kind=vgg19 needs backbone.weights (a local file path)")
        return vgg19_backbone(cfg["weights"])
    raise ConfigError(f"backbone.kind={kind!r} is unknown; choose random or vgg19")


def bundled_image(name: str, size: int) -> torch.Tensor:
    """A photograph bundled with scikit-image as 3 x size x size floats in [0, 1].

    Scaled so the shorter side is `size`, then centre-cropped; grey images become 3 equal
    channels. Images scikit-image would download on demand raise DataError (we are offline).
    """
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if not callable(loader) or name.startswith("_"):
        raise DataError(f"skimage.data.{name}: no such image in scikit-image")
    try:
        array = np.asarray(loader())
    except Exception as exc:  # noqa: BLE001 - fetch-on-demand fails in several ways offline
        raise DataError(f"skimage.data.{name}: not bundled offline ({type(exc).__name__})") from exc
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DataError(f"skimage.data.{name}: not an image (shape {array.shape})")
    array = array[:, :, :3]
    scale = 255.0 if array.dtype == np.uint8 else max(float(array.max()), 1.0)
    image = torch.from_numpy(array.astype(np.float32) / scale).permute(2, 0, 1)
    return resize_crop(image, size)


def resize_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """C x H x W -> C x size x size: shorter side to `size` (antialiased), centre crop."""
    if size < 8:
        raise ConfigError(f"image size must be at least 8 pixels, got {size}")
    _, h, w = image.shape
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    resized = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear",
                            align_corners=False, antialias=True)[0]
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[:, top:top + size, left:left + size].clamp(0, 1).contiguous()
