"""Stage filters: the input that most excites each filter of the trained CNN's conv layers.

DVC: python pipelines/filters.py --config-dir . --config-name params
"""

from pathlib import Path

from _entry import plain, stage

from cnnlab.analysis.visualize import run_units, units_summary


@stage
def main(cfg) -> None:
    opts = plain(cfg.analysis.filters)
    paths = cfg.paths
    metrics = run_units("filters", opts, Path(paths.models) / opts["experiment"] / "model.ckpt",
                        Path(paths.prepared) / opts["dataset"], Path(paths.reports) / "filters")
    print("\n".join(units_summary("filters", metrics)))


if __name__ == "__main__":
    main()
