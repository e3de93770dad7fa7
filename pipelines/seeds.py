"""Stages seeds_audio, seeds_text: the compared experiments again with further seeds, in one process.

DVC:  python pipelines/seeds.py --config-dir . --config-name params run=audio
Writes metrics/<dataset>/seeds.json and models/seeds_<domain>/<experiment>/seed<k>.ckpt; the
results stages pair them with each experiment's own seed (its train@ stage).
"""

from cnnlab.core.stage import StageContext, StageResult, stage
from cnnlab.training.replicates import SeedsConfig, train_seeds


@stage("seeds_{run}", section="seeds.{run}", schema=SeedsConfig, experiment="seeds",
       reads=lambda cfg, config: [f"train.{name}" for name in cfg["experiments"]])
def main(cfg: dict, ctx: StageContext) -> StageResult:
    paths, dataset = ctx.paths, cfg["dataset"]
    results = train_seeds(ctx.root["train"], cfg["experiments"], cfg["seeds"],
                          paths.prepared / dataset, ctx.out_dir(paths.models / ctx.name))
    return StageResult(results, metrics_file=paths.metrics / dataset / "seeds.json", summary=[
        f"{ctx.name}: {name} seeds {r['seeds']}: test_acc "
        f"{', '.join(f'{a:.4f}' for a in r['test_acc'])}" for name, r in results.items()])


if __name__ == "__main__":
    main()
