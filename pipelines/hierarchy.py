"""Stage hierarchy: receptive field and measured extent per layer, maximising images side by side.

DVC: python pipelines/hierarchy.py --config-dir . --config-name params
"""

from cnnlab.analysis.hierarchy import HierarchyConfig, run_hierarchy
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("hierarchy", section="analysis.hierarchy", schema=HierarchyConfig)
def main(cfg: dict, ctx: StageContext) -> StageResult:
    reports = ctx.paths.reports
    metrics, claims = run_hierarchy(
        cfg, ctx.paths.models / cfg["experiment"] / "model.ckpt",
        ctx.paths.prepared / cfg["dataset"],
        [reports / name / "images.pt" for name in cfg["images_from"]],
        ctx.out_dir(reports / "hierarchy"))
    return StageResult(metrics, claims, [
        f"hierarchy {layer}: receptive field {row['receptive_field']} px, gradient spread "
        f"{row['gradient_spread']:.2f} px, 90% area {row['gradient_area90']} px"
        for layer, row in metrics.items()])


if __name__ == "__main__":
    main()
