"""Stage neurons: the input that most excites each neuron of the trained CNN's dense layer.

DVC: python pipelines/neurons.py --config-dir . --config-name params
"""

from pathlib import Path

from _entry import plain, stage

from cnnlab.analysis.visualize import run_units


@stage
def main(cfg) -> None:
    opts = plain(cfg.analysis.neurons)
    paths = cfg.paths
    metrics = run_units("neurons", opts, Path(paths.models) / opts["experiment"] / "model.ckpt",
                        Path(paths.prepared) / opts["dataset"], Path(paths.reports) / "neurons")
    for layer, s in metrics["layers"].items():
        print(f"neurons {layer}: {s['units']} {s['kind']}s, median ratio to best digit "
              f"{s['median_ratio']:.2f}, beats every digit {s['beats_every_digit']:.0%} "
              f"({s['seconds']:.1f}s)")


if __name__ == "__main__":
    main()
