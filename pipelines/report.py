"""Stage report (the last): every claims.json and training metric -> reports/report.{md,html}.

DVC: python pipelines/report.py --config-dir . --config-name params
"""

from cnnlab.analysis.report import ReportConfig, Training, build_report
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("report", section="analysis.report", schema=ReportConfig, experiment="report",
       reads=lambda cfg, config: [f"train.{name}.dataset" for name in config["train"]])
def main(cfg: dict, ctx: StageContext) -> StageResult:
    from cnnlab.core.tracking.provenance import run_environment  # MLflow: only here

    paths = ctx.paths
    trainings = {name: Training(paths.metrics / exp["dataset"] / f"{name}.json",
                                paths.plots / exp["dataset"] / f"{name}.csv")
                 for name, exp in ctx.root["train"].items()}
    result = build_report(cfg, paths.reports, trainings, lambda name: ctx.out_file(paths.reports / name),
                          # a training's run is the one that logged its metrics file's wall time
                          lambda name, metrics: run_environment(name, "fit_seconds",
                                                                metrics.get("fit_seconds")))
    embedded = sorted(paths.reports.glob("*/*.png"))  # the topics' figures, in the page
    return StageResult(result, figures=embedded, summary=[
        f"report: {result['hold']} of {result['claims']} claims hold, {result['fail']} fail, "
        f"{result['not_shown']} not shown, "
        f"{result['topics_not_run']} topics not run -> {paths.reports / 'report.html'}"])


if __name__ == "__main__":
    main()
