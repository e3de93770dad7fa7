"""Stage params_report: shapes and parameters by formula vs actual; dnn vs cnn vs separable;
convolution as a dense layer with pruned and shared weights.

DVC: python pipelines/params_report.py --config-dir . --config-name params
"""

from cnnlab.analysis.comparison import reads_domain, training_curves
from cnnlab.analysis.params import ParamsReportConfig, run_params_report
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("params_report", section="analysis.params_report", schema=ParamsReportConfig,
       reads=lambda cfg, config: reads_domain(cfg, config, ["dataset"]))  # the curves
def main(cfg: dict, ctx: StageContext) -> StageResult:
    paths = ctx.paths
    ctx.out_file(paths.plots / f"{ctx.name}.csv").write_text(
        training_curves(ctx.root["train"], cfg["dataset"], paths.plots / cfg["dataset"]))
    metrics, claims = run_params_report(cfg, paths.models, paths.metrics / cfg["dataset"],
                                        paths.prepared / cfg["dataset"],
                                        ctx.out_dir(paths.reports / "params_report"))
    return StageResult(metrics, claims, [
        f"params_report {row['experiment']}: {row['params']:,} params, test_acc "
        f"{row['test_acc']:.4f}, layers match formulas: {row['layers_match_formulas']}"
        for row in metrics["comparison"]])


if __name__ == "__main__":
    main()
