"""Stage neurons: the input that most excites each neuron of the trained CNN's dense layer.

DVC: python pipelines/neurons.py --config-dir . --config-name params
"""

from pathlib import Path

from _entry import plain, stage

from cnnlab.analysis.visualize import run_units, units_summary


@stage
def main(cfg) -> None:
    opts = plain(cfg.analysis.neurons)
    paths = cfg.paths
    metrics = run_units("neurons", opts, Path(paths.models) / opts["experiment"] / "model.ckpt",
                        Path(paths.prepared) / opts["dataset"], Path(paths.reports) / "neurons")
    print("\n".join(units_summary("neurons", metrics)))


if __name__ == "__main__":
    main()
