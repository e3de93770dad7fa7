"""Stage classes: for each digit, an image maximising its class score, with and without ink.

DVC: python pipelines/classes.py --config-dir . --config-name params
"""

from cnnlab.analysis.classes import ClassesConfig, run_classes
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("classes", section="analysis.classes", schema=ClassesConfig)
def main(cfg: dict, ctx: StageContext) -> StageResult:
    paths = ctx.paths
    metrics, claims = run_classes(cfg, paths.models / cfg["experiment"] / "model.ckpt",
                                  paths.prepared / cfg["dataset"],
                                  ctx.out_dir(paths.reports / "classes"))
    return StageResult(metrics, claims, [
        f"classes {variant}: min confidence {s['min_confidence']:.4f}, ink fraction "
        f"{s['ink_fraction']:.3f}, correlation with mean digit {s['corr_mean_digit']:.3f}"
        for variant, s in ((v, metrics[v]) for v in ("unconstrained", "few_ink"))])


if __name__ == "__main__":
    main()
