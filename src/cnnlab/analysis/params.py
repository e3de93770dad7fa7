"""Shapes and parameter counts by formula beside the actual ones, and conv as a dense layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cnnlab.models.geometry import LayerPlan


def layer_table(model: nn.Sequential, input_shape: tuple[int, ...]) -> list[dict[str, Any]]:
    """One row per planned layer: formula shape/params next to what the built model does."""
    plan: list[LayerPlan] = model.plan  # type: ignore[assignment]
    actual_shapes: dict[str, tuple[int, ...]] = {}
    hooks = [module.register_forward_hook(
        lambda _m, _i, out, name=name: actual_shapes.__setitem__(name, tuple(out.shape[1:])))
        for name, module in model.named_children()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
    rows = []
    for layer in plan:
        module = getattr(model, layer.name, None)
        actual_params = sum(p.numel() for p in module.parameters()) if module is not None else 0
        shape = actual_shapes.get(layer.name, ())
        rows.append({
            "layer": layer.name, "kind": layer.kind,
            "shape_formula": "x".join(map(str, layer.out_shape)),
            "shape_actual": "x".join(map(str, shape)),
            "params_formula": layer.params, "params_actual": actual_params,
            "match": tuple(shape) == tuple(layer.out_shape) and actual_params == layer.params,
        })
    return rows


@dataclass(frozen=True)
class ConvAsDense:
    """The dense matrix equal to a convolution, and what makes it special."""

    in_features: int
    out_features: int
    weights: int  # all entries of the dense matrix
    nonzero: int  # the ones a convolution keeps (the rest are pruned)
    distinct_nonzero: int  # the ones that are different (the rest are shared copies)
    kernel_weights: int  # the convolution's own weight count
    max_abs_difference: float  # dense output vs conv output on real inputs


def conv_as_dense(conv: nn.Conv2d, input_shape: tuple[int, int, int],
                  inputs: torch.Tensor) -> tuple[torch.Tensor, ConvAsDense]:
    """Build W with conv(x) = W @ x.flatten() + b, by pushing the identity basis through conv.

    A convolution is linear in its input, so its matrix is its response to each basis image.
    """
    n_in = int(torch.tensor(input_shape).prod())
    with torch.no_grad():
        basis = torch.eye(n_in).reshape(n_in, *input_shape)
        weight = nn.functional.conv2d(basis, conv.weight, None, conv.stride, conv.padding,
                                      conv.dilation, conv.groups)
        out_shape = weight.shape[1:]
        weight = weight.reshape(n_in, -1).T.contiguous()  # (out_features, in_features)
        bias = (conv.bias if conv.bias is not None else torch.zeros(out_shape[0]))
        bias = bias[:, None, None].expand(out_shape).reshape(-1)
        dense_out = inputs.reshape(len(inputs), -1) @ weight.T + bias
        conv_out = conv(inputs).reshape(len(inputs), -1)
        nonzero = weight[weight != 0]
    return weight, ConvAsDense(
        in_features=n_in, out_features=weight.shape[0], weights=weight.numel(),
        nonzero=int(nonzero.numel()), distinct_nonzero=int(torch.unique(nonzero).numel()),
        kernel_weights=conv.weight.numel(),
        max_abs_difference=float((dense_out - conv_out).abs().max()),
    )
