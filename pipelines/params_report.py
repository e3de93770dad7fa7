"""Stage params_report: shapes and parameters by formula vs actual; dnn vs cnn vs separable;
convolution as a dense layer with pruned and shared weights."""

from dataclasses import asdict
from pathlib import Path

from _entry import plain, stage

from cnnlab.core import tracking
from cnnlab.core.claims import Claim, markdown_table, read_metrics, write_claims
from cnnlab.analysis.params import conv_as_dense, layer_table
from cnnlab.data.prepared import load_prepared
from cnnlab.core.io import write_json, write_text
from cnnlab.training.batches import as_model_input
from cnnlab.training.checkpoint import load_checkpoint

LAYER_COLUMNS = ["layer", "kind", "shape_formula", "shape_actual", "params_formula",
                 "params_actual", "match"]


@stage
def main(cfg) -> None:
    opts = plain(cfg.report.params)
    out = Path(cfg.paths.reports) / "params"
    models, comparison, layers = {}, [], {}
    for name in opts["experiments"]:
        model, meta = load_checkpoint(Path(cfg.paths.models) / name / "model.ckpt")
        metrics = read_metrics(Path(cfg.paths.metrics) / f"{name}.json")
        models[name] = model
        layers[name] = layer_table(model, tuple(meta["input_shape"]))
        comparison.append({"experiment": name, "model": meta["model_cfg"]["name"],
                           "params": metrics["params"], "test_acc": metrics["test_acc"],
                           "seconds_per_epoch": metrics["seconds_per_epoch"],
                           "layers_match_formulas": all(r["match"] for r in layers[name])})

    cnn = models[opts["conv_model"]]
    data = load_prepared(Path(cfg.paths.prepared) / "mnist")
    digits = as_model_input(data.test.x[: int(opts["dense_check_digits"])])
    _, dense = conv_as_dense(cnn.conv1, tuple(digits.shape[1:]), digits)

    by_name = {row["experiment"]: row for row in comparison}
    cnn_row, dnn_row = by_name[opts["conv_model"]], by_name[opts["dense_model"]]
    sep_layer = next(r for r in layers[opts["separable_model"]] if r["kind"] == "separable")
    conv_layer = next(r for r in layers[opts["conv_model"]] if r["layer"] == sep_layer["layer"])
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
        md += [f"\n## {name}: each layer by formula and as built\n", markdown_table(rows, LAYER_COLUMNS)]
    md += ["\n## conv1 as a dense layer\n", markdown_table([asdict(dense)], list(asdict(dense)))]
    write_json(out / "params.json", {"comparison": comparison, "layers": layers,
                                     "conv_as_dense": asdict(dense)})
    write_text(out / "params.md", "".join(md))
    write_claims(out / "claims.json", claims)
    tracking.log_stage("analysis", "params_report", opts,
                       {"conv1_dense_nonzero_fraction": dense.nonzero / dense.weights,
                        "conv1_dense_max_abs_difference": dense.max_abs_difference},
                       [out / "params.md", out / "params.json", out / "claims.json"])
    print("".join(md[:3]))


if __name__ == "__main__":
    main()
