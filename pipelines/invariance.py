"""Stage invariance: CNN vs dense net on shifted digits and on subsampled-then-restored digits.

DVC: python pipelines/invariance.py --config-dir . --config-name params
"""

from cnnlab.analysis.invariance import InvarianceConfig, run_invariance
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("invariance", section="analysis.invariance", schema=InvarianceConfig)
def main(cfg: dict, ctx: StageContext) -> StageResult:
    paths = ctx.paths
    metrics, claims = run_invariance(
        cfg, {role: paths.models / cfg[role] / "model.ckpt" for role in ("cnn", "dense")},
        paths.prepared / cfg["dataset"], ctx.out_dir(paths.reports / "invariance"),
        ctx.out_dir(paths.plots / "invariance"))
    return StageResult(metrics, claims, [
        f"invariance {m['experiment']}: clean {m['clean']:.4f}, mean drop under shifts "
        f"{m['mean_shift_drop']:.3f}, subsampled {m['subsampled']}"
        for m in (metrics["cnn"], metrics["dense"])])


if __name__ == "__main__":
    main()
