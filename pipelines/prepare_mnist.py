"""Stage prepare_mnist: source -> data/prepared/mnist/{train,val,test}.pt + manifest.json."""

from pathlib import Path

from _entry import plain, stage

from cnnlab.data import mnist
from cnnlab.data.prepared import write_prepared
from cnnlab.core.io import atomic_dir


@stage
def main(cfg) -> None:
    data_cfg = plain(cfg.data.mnist)
    arrays, provenance = mnist.load_source(data_cfg)
    splits = mnist.make_splits(arrays, int(data_cfg["val_size"]), int(data_cfg["seed"]),
                               data_cfg.get("max_train"), data_cfg.get("max_test"))
    out = Path(cfg.paths.prepared) / "mnist"
    with atomic_dir(out) as tmp:
        manifest = write_prepared(tmp, splits, {
            "dataset": "mnist", "classes": mnist.CLASSES, "input_shape": [1, 28, 28],
            **provenance})
    print(f"prepare_mnist: {manifest['sizes']} -> {out}")


if __name__ == "__main__":
    main()
