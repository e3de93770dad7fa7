"""Stage audio_results: every audio model's metrics in one table, and the speech claims.

On another prepared dataset (e.g. FSDD) the dataset follows `data.audio.dataset`:
    python pipelines/audio_results.py data.audio.dataset=fsdd_take paths.reports=reports/fsdd_take
"""

from cnnlab.analysis.comparison import training_curves
from cnnlab.analysis.speech import SpeechResultsConfig, write_speech_results
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("audio_results", section="analysis.audio_results", schema=SpeechResultsConfig)
def main(cfg: dict, ctx: StageContext) -> StageResult:
    paths = ctx.paths
    ctx.out_file(paths.plots / f"{ctx.name}.csv").write_text(
        training_curves(ctx.root["train"], cfg["dataset"], paths.plots / cfg["dataset"]))
    metrics, claims = write_speech_results(cfg, ctx.root["train"], paths.metrics / cfg["dataset"],
                                           paths.prepared / cfg["dataset"],
                                           ctx.out_dir(paths.reports / "audio_results"))
    return StageResult(metrics, claims, [f"audio_results: holds={c.holds}: {c.evidence}"
                                         for c in claims])


if __name__ == "__main__":
    main()
