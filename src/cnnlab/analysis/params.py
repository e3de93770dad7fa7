"""Stage params_report: shapes and parameter counts by formula beside the actual ones; dense vs
convolutional vs separable; a convolution rebuilt as a dense layer with pruned, shared weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.core.claims import Claim, markdown_table, read_metrics
from cnnlab.core.io import write_text
from cnnlab.data.prepared import load_prepared
from cnnlab.models.geometry import LayerPlan
from cnnlab.training.batches import as_model_input
from cnnlab.training.checkpoint import load_checkpoint

LAYER_COLUMNS = ["layer", "kind", "shape_formula", "shape_actual", "params_formula",
                 "params_actual", "match"]


@dataclass
class ParamsReportConfig:
    """analysis.params_report (values in conf/analysis/params_report.yaml)."""

    dataset: str
    experiments: list[str]
    conv_model: str
    dense_model: str
    separable_model: str
    dense_check_digits: int  # real test digits pushed through conv1 and its dense twin


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


def run_params_report(cfg: dict[str, Any], models_dir: Path, metrics_dir: Path, data_dir: Path,
                      out_dir: Path) -> tuple[dict[str, Any], list[Claim]]:
    """Every layer of the experiments by formula and as built; writes `out_dir/params.md`."""
    models, comparison, layers = {}, [], {}
    for name in cfg["experiments"]:
        model, meta = load_checkpoint(models_dir / name / "model.ckpt")
        metrics = read_metrics(metrics_dir / f"{name}.json")
        models[name] = model
        layers[name] = layer_table(model, tuple(meta["input_shape"]))
        comparison.append({"experiment": name, "model": meta["model_cfg"]["name"],
                           "params": metrics["params"], "test_acc": metrics["test_acc"],
                           "seconds_per_epoch": metrics["seconds_per_epoch"],
                           "layers_match_formulas": all(r["match"] for r in layers[name])})
    digits = as_model_input(load_prepared(data_dir).test.x[: int(cfg["dense_check_digits"])])
    _, dense = conv_as_dense(models[cfg["conv_model"]].conv1, tuple(digits.shape[1:]), digits)

    by_name = {row["experiment"]: row for row in comparison}
    cnn_row, dnn_row = by_name[cfg["conv_model"]], by_name[cfg["dense_model"]]
    sep_layer = next(r for r in layers[cfg["separable_model"]] if r["kind"] == "separable")
    conv_layer = next(r for r in layers[cfg["conv_model"]] if r["layer"] == sep_layer["layer"])
    claims = [
        Claim("A CNN needs far fewer parameters than a dense net, at no loss of accuracy",
              "params_report", f"cnn {cnn_row['params']:,} params, {cnn_row['test_acc']:.2%}; "
              f"dnn {dnn_row['params']:,} params, {dnn_row['test_acc']:.2%}",
              dnn_row["params"] / cnn_row["params"],
              cnn_row["params"] < dnn_row["params"] and cnn_row["test_acc"] >= dnn_row["test_acc"]),
        Claim("Output size is (O - F + 2P)/S + 1", "params_report",
              f"{sum(len(v) for v in layers.values())} layers, formula vs actual shape and params",
              None, all(r["layers_match_formulas"] for r in comparison)),
        Claim("Depthwise-separable conv has C_in*k*k + C_in*C_out weights", "params_report",
              f"{sep_layer['layer']}: {sep_layer['params_actual']:,} params (formula "
              f"{sep_layer['params_formula']:,}) vs {conv_layer['params_actual']:,} for a full conv",
              conv_layer["params_actual"] / sep_layer["params_actual"], sep_layer["match"]),
        Claim("A convolution is a dense layer with weights pruned and shared", "params_report",
              f"conv1 as a {dense.out_features}x{dense.in_features} matrix: {dense.nonzero:,} of "
              f"{dense.weights:,} weights non-zero, {dense.distinct_nonzero} distinct; max output "
              f"difference {dense.max_abs_difference:.1e}",
              dense.nonzero / dense.weights,
              dense.max_abs_difference < 1e-4 and dense.distinct_nonzero <= dense.kernel_weights),
    ]
    md = ["# Shapes and parameters\n", "## dnn vs cnn vs separable\n",
          markdown_table(comparison, ["experiment", "model", "params", "test_acc",
                                      "seconds_per_epoch", "layers_match_formulas"])]
    for name, rows in layers.items():
        md += [f"\n## {name}: each layer by formula and as built\n",
               markdown_table(rows, LAYER_COLUMNS)]
    md += ["\n## conv1 as a dense layer\n", markdown_table([asdict(dense)], list(asdict(dense)))]
    write_text(out_dir / "params.md", "".join(md))
    return {"comparison": comparison, "layers": layers, "conv_as_dense": asdict(dense)}, claims
