"""Stage deepdream: dream real digits through the lecture CNN and a photo through the backbone.

DVC: python pipelines/deepdream.py --config-dir . --config-name params
"""

from cnnlab.analysis.dream import DeepDreamConfig, run_deepdream
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("deepdream", section="analysis.deepdream", schema=DeepDreamConfig)
def main(cfg: dict, ctx: StageContext) -> StageResult:
    paths = ctx.paths
    metrics, claims = run_deepdream(
        cfg, paths.models / cfg["digits"]["experiment"] / "model.ckpt",
        paths.prepared / cfg["digits"]["dataset"], ctx.out_dir(paths.reports / "deepdream"))
    return StageResult(metrics, claims, [
        f"deepdream {name} {row['network']}:{row['layer']}: activation norm x{row['ratio']:.2f} "
        f"(noise x{row['control_ratio']:.2f}) in {row['seconds']:.1f}s"
        for name, row in ((n, metrics[n]) for n in ("digits", "photo"))])


if __name__ == "__main__":
    main()
