"""Stage prepare_mnist: source -> data/prepared/mnist/{train,val,test}.pt + manifest.json."""

from cnnlab.core.stage import StageContext, StageResult, stage
from cnnlab.data import mnist
from cnnlab.data.prepared import write_prepared


@stage("prepare_mnist", section="data.mnist", schema=mnist.MnistConfig, experiment="data")
def main(cfg: dict, ctx: StageContext) -> StageResult:
    arrays, provenance = mnist.load_source(cfg)
    splits = mnist.make_splits(arrays, cfg["val_size"], cfg["seed"], cfg["max_train"],
                               cfg["max_test"])
    out = ctx.paths.prepared / "mnist"
    manifest = write_prepared(ctx.out_dir(out), splits, {
        "dataset": "mnist", "classes": mnist.CLASSES, "input_shape": [1, 28, 28], **provenance})
    return StageResult({"sizes": manifest["sizes"]},
                       summary=[f"prepare_mnist: {manifest['sizes']} -> {out}"])


if __name__ == "__main__":
    main()
