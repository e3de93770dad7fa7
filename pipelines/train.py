"""Stage train@<experiment>: fit one entry of `train`, test it, save it.

DVC:       python pipelines/train.py --config-dir . --config-name params run=mnist_cnn
Multirun:  python pipelines/train.py -m run=mnist_cnn train.mnist_cnn.model.conv.0.channels=16,32
"""

from cnnlab.core.stage import StageContext, StageResult, stage
from cnnlab.training.resume import resume_state
from cnnlab.training.run import ExperimentConfig, RunOutputs, train_experiment


def interrupted_run(cfg: dict, ctx: StageContext) -> str | None:
    """The MLflow run of a killed attempt with this config and data: resuming continues it."""
    return resume_state(ctx.name, cfg, ctx.paths.prepared / cfg["dataset"]).meta.get("run_id")


@stage("{run}", section="train.{run}", schema=ExperimentConfig, experiment="{run}",
       continues=interrupted_run)
def main(cfg: dict, ctx: StageContext) -> StageResult:
    name, dataset, paths = ctx.name, cfg["dataset"], ctx.paths
    outputs = RunOutputs(ctx.out_file(paths.models / name / "model.ckpt"),
                         ctx.out_file(paths.plots / dataset / f"{name}.csv"))
    metrics = train_experiment(name, cfg, paths.prepared / dataset, outputs, ctx.in_sweep,
                               resume_state(name, cfg, paths.prepared / dataset))
    return StageResult(metrics, metrics_file=paths.metrics / dataset / f"{name}.json", summary=[
        f"train {name}: test_acc={metrics['test_acc']:.4f} params={metrics['params']} "
        f"s/epoch={metrics['seconds_per_epoch']:.1f}"])


if __name__ == "__main__":
    main()
