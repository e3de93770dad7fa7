"""Shapes and parameter counts by the lecture's closed forms, checked before a model is built.

Output size of a convolution or pooling window: (O - F + 2P) / S + 1, rounded down.
Parameters: conv C_out*C_in*kh*kw + C_out; depthwise-separable C_in*kh*kw + C_in*C_out
(+ C_out biases of the pointwise step); dense n_in*n_out + n_out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cnnlab.core.errors import ConfigError

Shape = tuple[int, ...]


def pair(value: int | Sequence[int], key: str) -> tuple[int, int]:
    """An int or a [height, width] pair, as configs write kernels, strides and pools."""
    if isinstance(value, int):
        return value, value
    values = tuple(value)
    if len(values) != 2 or not all(isinstance(v, int) for v in values):
        raise ConfigError(f"{key}={value!r}: expected an int or a [height, width] pair")
    return values  # type: ignore[return-value]


def output_size(size: int, window: int, padding: int, stride: int) -> int:
    """(O - F + 2P) / S + 1, rounded down, as in the lecture."""
    return (size - window + 2 * padding) // stride + 1


def output_hw(hw: tuple[int, int], window: tuple[int, int], padding: tuple[int, int],
              stride: tuple[int, int], where: str) -> tuple[int, int]:
    out = tuple(output_size(n, f, p, s) for n, f, p, s in zip(hw, window, padding, stride,
                                                               strict=True))
    if min(out) <= 0 or min(stride) <= 0:
        raise ConfigError(
            f"{where}: input {hw[0]}x{hw[1]} with window {window}, padding {padding}, "
            f"stride {stride} gives a feature map of {out[0]}x{out[1]} by (O - F + 2P)/S + 1; "
            "use a smaller kernel or pool, more padding, or fewer layers")
    return out  # type: ignore[return-value]


def conv_params(c_in: int, c_out: int, kernel: tuple[int, int], separable: bool) -> int:
    kh, kw = kernel
    if separable:
        return c_in * kh * kw + c_in * c_out + c_out
    return c_out * c_in * kh * kw + c_out


def dense_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


@dataclass(frozen=True)
class LayerPlan:
    """One layer as the formulas predict it: a row of the shapes-and-parameters table."""

    name: str
    kind: str  # conv | separable | maxpool | avgpool | flatten | globalpool | dense
    out_shape: Shape
    params: int
    settings: Mapping[str, Any]


@dataclass(frozen=True)
class ConvLayerCfg:
    channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    pool: tuple[int, int]
    separable: bool


DOWNSAMPLE = ("max", "avg", "stride", "none")
HEADS = ("flatten", "global_avg", "global_max")


def _conv_layer_cfg(layer: Mapping[str, Any], cfg: Mapping[str, Any], i: int) -> ConvLayerCfg:
    where = f"model.conv[{i}]"
    if "channels" not in layer or "kernel" not in layer:
        raise ConfigError(f"{where}: needs 'channels' and 'kernel'")
    if int(layer["channels"]) <= 0:
        raise ConfigError(f"{where}.channels={layer['channels']}: must be positive")
    return ConvLayerCfg(
        channels=int(layer["channels"]),
        kernel=pair(layer["kernel"], f"{where}.kernel"),
        stride=pair(layer.get("stride", 1), f"{where}.stride"),
        padding=pair(layer.get("padding", cfg.get("padding", 0)), f"{where}.padding"),
        pool=pair(layer.get("pool", cfg.get("pool", 2)), f"{where}.pool"),
        separable=bool(layer.get("separable", False)),
    )


def plan_convnet(cfg: Mapping[str, Any], input_shape: Shape, num_classes: int) -> list[LayerPlan]:
    """Predict every layer's output shape and parameter count; raise ConfigError if impossible."""
    downsample = cfg.get("downsample", "max")
    head = cfg.get("head", "flatten")
    if downsample not in DOWNSAMPLE:
        raise ConfigError(f"model.downsample={downsample!r}: choose one of {DOWNSAMPLE}")
    if head not in HEADS:
        raise ConfigError(f"model.head={head!r}: choose one of {HEADS}")
    if len(input_shape) != 3:
        raise ConfigError(f"convnet needs (channels, height, width) inputs, got {input_shape}")
    c, h, w = input_shape
    plan: list[LayerPlan] = []
    for i, raw in enumerate(cfg.get("conv", []), start=1):
        layer = _conv_layer_cfg(raw, cfg, i - 1)
        stride = layer.pool if downsample == "stride" else layer.stride
        h, w = output_hw((h, w), layer.kernel, layer.padding, stride, f"model.conv[{i - 1}]")
        kind = "separable" if layer.separable else "conv"
        params = conv_params(c, layer.channels, layer.kernel, layer.separable)
        c = layer.channels
        plan.append(LayerPlan(f"conv{i}", kind, (c, h, w), params, {
            "kernel": layer.kernel, "stride": stride, "padding": layer.padding}))
        if downsample in ("max", "avg") and layer.pool != (1, 1):
            h, w = output_hw((h, w), layer.pool, (0, 0), layer.pool, f"model.conv[{i - 1}].pool")
            plan.append(LayerPlan(f"pool{i}", f"{downsample}pool", (c, h, w), 0,
                                  {"kernel": layer.pool, "stride": layer.pool}))
    if head == "flatten":
        features = c * h * w
        plan.append(LayerPlan("flatten", "flatten", (features,), 0, {}))
    else:
        features = c
        plan.append(LayerPlan("gap", "globalpool", (features,), 0, {"mode": head}))
    plan.extend(plan_dense(features, cfg.get("hidden", []), num_classes))
    return plan


def plan_dense(n_in: int, hidden: Sequence[int], num_classes: int) -> list[LayerPlan]:
    plan = []
    for i, width in enumerate([*hidden, num_classes], start=1):
        if int(width) <= 0:
            raise ConfigError(f"model.hidden: layer widths must be positive, got {list(hidden)}")
        name = f"fc{i}" if i <= len(hidden) else "out"
        plan.append(LayerPlan(name, "dense", (int(width),), dense_params(n_in, int(width)), {}))
        n_in = int(width)
    return plan


def receptive_fields(plan: Sequence[LayerPlan]) -> dict[str, int]:
    """Receptive field (in input pixels, along height) of each conv/pool layer's units.

    r_out = r_in + (k - 1) * j_in, j_out = j_in * s, starting from r = j = 1.
    """
    r, j = 1, 1
    fields = {}
    for layer in plan:
        if "kernel" not in layer.settings:
            continue
        k, s = layer.settings["kernel"][0], layer.settings["stride"][0]
        r, j = r + (k - 1) * j, j * s
        fields[layer.name] = r
    return fields
