"""Stage context_windows: the speech claim in its own setting, on windows of k frames.

DVC:  python pipelines/context_windows.py --config-dir . --config-name params
On real voices (FSDD, prepared as data.audio.dataset=fsdd):
    python pipelines/context_windows.py data.audio.dataset=fsdd paths.reports=reports/fsdd
Writes reports/context_windows/ (table, curve, claims), plots/context_windows/*.csv and
metrics/context_windows.json.
"""

from cnnlab.analysis.context import ContextWindowsConfig, write_context_windows
from cnnlab.core.stage import StageContext, StageResult, stage


def reads(cfg: dict, config: dict) -> list[str]:
    """The three experiments' models and trainers, and the cross-gender voice lists."""
    names = (cfg["frequency_only"], cfg["time_only"], cfg["image_cnn"])
    return [f"train.{name}.{key}" for name in names for key in ("model", "trainer")] + [
        f"analysis.cross_gender.{key}" for key in ("male", "female", "val_fraction")]


@stage("context_windows", section="analysis.context_windows", schema=ContextWindowsConfig,
       reads=reads)
def main(cfg: dict, ctx: StageContext) -> StageResult:
    paths = ctx.paths
    metrics, claims = write_context_windows(
        cfg, ctx.root["train"], ctx.root["analysis"]["cross_gender"], paths.prepared,
        ctx.out_dir(paths.reports / ctx.name), ctx.out_dir(paths.plots / ctx.name))
    return StageResult(metrics, claims, [f"context_windows: {c.label}: {c.claim}: {c.evidence}"
                                         for c in claims],
                       figures=[paths.reports / ctx.name / "context_windows.png"])


if __name__ == "__main__":
    main()
