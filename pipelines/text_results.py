"""Stage text_results: every text model's metrics over its seeds beside Kim (2014), the
permutation check of the embedding dimensions, and the text claims."""

from cnnlab.analysis.comparison import reads_domain, training_curves
from cnnlab.analysis.sentences import TextResultsConfig, write_text_results
from cnnlab.core.stage import StageContext, StageResult, stage


@stage("text_results", section="analysis.text_results", schema=TextResultsConfig,
       reads=reads_domain)
def main(cfg: dict, ctx: StageContext) -> StageResult:
    paths = ctx.paths
    ctx.out_file(paths.plots / f"{ctx.name}.csv").write_text(
        training_curves(ctx.root["train"], cfg["dataset"], paths.plots / cfg["dataset"]))
    metrics, claims = write_text_results(cfg, ctx.root["train"], paths,
                                         ctx.out_dir(paths.reports / "text_results"))
    return StageResult(metrics, claims, [f"text_results: {c.label}: {c.evidence}"
                                         for c in claims])


if __name__ == "__main__":
    main()
