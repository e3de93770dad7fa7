"""Stage style: Gatys style transfer on the image backbone; losses before and after.

DVC: python pipelines/style.py --config-dir . --config-name params
"""

from cnnlab.analysis.style import StyleConfig, run_style
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("style", section="analysis.style", schema=StyleConfig)
def main(cfg: dict, ctx: StageContext) -> StageResult:
    paths = ctx.paths
    metrics, claims = run_style(cfg, ctx.out_dir(paths.reports / "style"),
                                ctx.out_file(paths.plots / "style.csv"))
    return StageResult(metrics, claims, [
        f"style: style loss /{metrics['style_drop']:.1f}, content loss at "
        f"{metrics['content_fraction']:.0%} of the style image's, in {metrics['seconds']:.1f}s"])


if __name__ == "__main__":
    main()
