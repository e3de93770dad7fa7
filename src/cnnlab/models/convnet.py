"""The lecture's networks, built from config: convolution stacks and the dense baseline.

Both are `nn.Sequential` with named layers (conv1, pool1, fc1, out, ...), so analysis code
can hook any layer by name. Kernels, strides and pools may be rectangular, which is how the
speech models slide along frequency only or time only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from math import prod
from typing import Any

from torch import nn

from cnnlab.models.geometry import LayerPlan, plan_convnet, plan_dense
from cnnlab.models.registry import InputSpec, register


class SeparableConv2d(nn.Module):
    """Depthwise k x k per channel (C_in*k*k weights), then pointwise 1 x 1 (C_in*C_out)."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int]) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, kernel, stride, padding, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def _dense_layers(plan: list[LayerPlan], n_in: int, dropout: float) -> list[tuple[str, nn.Module]]:
    layers: list[tuple[str, nn.Module]] = []
    for layer in plan:
        if layer.kind != "dense":
            continue
        if layer.name == "out" and dropout > 0:
            layers.append(("dropout", nn.Dropout(dropout)))
        layers.append((layer.name, nn.Linear(n_in, layer.out_shape[0])))
        if layer.name != "out":
            layers.append((f"relu_{layer.name}", nn.ReLU()))
        n_in = layer.out_shape[0]
    return layers


class ConvNet(nn.Sequential):
    def __init__(self, plan: list[LayerPlan], in_channels: int, dropout: float = 0.0) -> None:
        layers: list[tuple[str, nn.Module]] = []
        c = in_channels
        for layer in plan:
            s = layer.settings
            if layer.kind == "conv":
                layers.append((layer.name, nn.Conv2d(c, layer.out_shape[0], s["kernel"],
                                                     s["stride"], s["padding"])))
            elif layer.kind == "separable":
                layers.append((layer.name, SeparableConv2d(c, layer.out_shape[0], s["kernel"],
                                                           s["stride"], s["padding"])))
            elif layer.kind == "maxpool":
                layers.append((layer.name, nn.MaxPool2d(s["kernel"], s["stride"])))
            elif layer.kind == "avgpool":
                layers.append((layer.name, nn.AvgPool2d(s["kernel"], s["stride"])))
            elif layer.kind == "flatten":
                layers.append(("flatten", nn.Flatten()))
            elif layer.kind == "globalpool":
                pool = nn.AdaptiveAvgPool2d(1) if s["mode"] == "global_avg" else nn.AdaptiveMaxPool2d(1)
                layers += [("gap", pool), ("flatten", nn.Flatten())]
            if layer.kind in ("conv", "separable"):
                layers.append((f"relu{layer.name[4:]}", nn.ReLU()))
                c = layer.out_shape[0]
        flat = next(p for p in plan if p.kind in ("flatten", "globalpool")).out_shape[0]
        layers += _dense_layers(plan, flat, dropout)
        super().__init__(OrderedDict(layers))
        self.plan = plan


class MLP(nn.Sequential):
    def __init__(self, plan: list[LayerPlan], n_in: int, dropout: float = 0.0) -> None:
        super().__init__(OrderedDict([("flatten", nn.Flatten()), *_dense_layers(plan, n_in, dropout)]))
        self.plan = plan


@register("convnet")
def build_convnet(cfg: Mapping[str, Any], spec: InputSpec) -> ConvNet:
    plan = plan_convnet(cfg, spec.input_shape, spec.num_classes)
    return ConvNet(plan, spec.input_shape[0], float(cfg.get("dropout", 0.0)))


@register("mlp")
def build_mlp(cfg: Mapping[str, Any], spec: InputSpec) -> MLP:
    n_in = prod(spec.input_shape)
    plan = [LayerPlan("flatten", "flatten", (n_in,), 0, {}),
            *plan_dense(n_in, cfg.get("hidden", []), spec.num_classes)]
    return MLP(plan, n_in, float(cfg.get("dropout", 0.0)))
