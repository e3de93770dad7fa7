"""Stage train@<experiment>: fit one entry of `train` and log it to MLflow.

DVC:       python pipelines/train.py --config-dir . --config-name params run=mnist_cnn
Multirun:  python pipelines/train.py -m run=mnist_cnn \
               train.mnist_cnn.model.conv.0.channels=16,32
A multirun writes its outputs under its Hydra sweep directory (never over DVC's) and groups
its MLflow runs under one parent run.
"""

from pathlib import Path

from _entry import plain, stage
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from cnnlab.errors import ConfigError
from cnnlab.training.run import RunOutputs, train_experiment


@stage
def main(cfg) -> None:
    name = cfg.run
    if name not in cfg.train:
        raise ConfigError(f"run={name!r} is not an entry of train: {sorted(cfg.train)}")
    exp = plain(cfg.train[name])
    paths = cfg.paths
    hc = HydraConfig.get()
    sweep_id = run_name = None
    if hc.mode == RunMode.MULTIRUN:
        root = Path(hc.runtime.output_dir)
        outputs = RunOutputs.under(root / "models", root / "metrics", root / "plots", name)
        sweep_id = Path(hc.sweep.dir).name
        run_name = f"{name} {hc.job.override_dirname}"
    else:
        outputs = RunOutputs.under(Path(paths.models), Path(paths.metrics), Path(paths.plots), name)
    metrics = train_experiment(name, exp, Path(paths.prepared) / exp["dataset"], outputs,
                               sweep_id=sweep_id, run_name=run_name)
    print(f"train {name}: test_acc={metrics['test_acc']:.4f} params={metrics['params']} "
          f"s/epoch={metrics['seconds_per_epoch']:.1f}")


if __name__ == "__main__":
    main()
