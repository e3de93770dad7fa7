"""Stage audio_results: every audio model's metrics over its seeds in one table, the models on
pitch-shifted test clips, and the speech claims.

On another prepared dataset (e.g. FSDD) the dataset follows `data.audio.dataset`:
    python pipelines/audio_results.py data.audio.dataset=fsdd_take paths.reports=reports/fsdd_take
"""

from cnnlab.analysis.comparison import reads_domain, training_curves
from cnnlab.analysis.pitch import curves_csv
from cnnlab.analysis.speech import FIGURE, SpeechResultsConfig, write_speech_results
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("audio_results", section="analysis.audio_results", schema=SpeechResultsConfig,
       reads=reads_domain)
def main(cfg: dict, ctx: StageContext) -> StageResult:
    paths = ctx.paths
    ctx.out_file(paths.plots / f"{ctx.name}.csv").write_text(
        training_curves(ctx.root["train"], cfg["dataset"], paths.plots / cfg["dataset"]))
    metrics, claims, curves = write_speech_results(cfg, ctx.root["train"], paths,
                                                   ctx.out_dir(paths.reports / ctx.name))
    ctx.out_file(paths.plots / "audio_pitch_shift.csv").write_text(curves_csv(curves))
    figures = [paths.reports / ctx.name / FIGURE] if curves else []  # to the run's figures
    return StageResult(metrics, claims, [f"audio_results: {c.label}: {c.evidence}"
                                         for c in claims], figures=figures)


if __name__ == "__main__":
    main()
