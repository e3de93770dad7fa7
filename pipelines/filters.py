"""Stage filters: the input that most excites each filter of the trained CNN's conv layers.

DVC: python pipelines/filters.py --config-dir . --config-name params
"""

from pathlib import Path

from _entry import plain, stage

from cnnlab.analysis.visualize import run_units


@stage
def main(cfg) -> None:
    opts = plain(cfg.analysis.filters)
    paths = cfg.paths
    metrics = run_units("filters", opts, Path(paths.models) / opts["experiment"] / "model.ckpt",
                        Path(paths.prepared) / opts["dataset"], Path(paths.reports) / "filters")
    for layer, s in metrics["layers"].items():
        print(f"filters {layer}: {s['units']} {s['kind']}s, median ratio to best digit "
              f"{s['median_ratio']:.2f}, beats every digit {s['beats_every_digit']:.0%} "
              f"({s['seconds']:.1f}s)")


if __name__ == "__main__":
    main()
