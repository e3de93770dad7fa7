"""Stages filters and neurons: the input that most excites each unit of the trained CNN.

DVC:  python pipelines/units.py --config-dir . --config-name params run=filters   (or neurons)
"""

from cnnlab.analysis.units import UnitsConfig, run_units, units_summary
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("{run}", section="analysis.{run}", schema=UnitsConfig)
def main(cfg: dict, ctx: StageContext) -> StageResult:
    paths = ctx.paths
    metrics, claims = run_units(ctx.name, cfg, paths.models / cfg["experiment"] / "model.ckpt",
                                paths.prepared / cfg["dataset"],
                                ctx.out_dir(paths.reports / ctx.name))
    return StageResult(metrics, claims, units_summary(ctx.name, metrics))


if __name__ == "__main__":
    main()
