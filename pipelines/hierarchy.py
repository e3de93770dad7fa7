"""Stage hierarchy: receptive field and measured extent per layer, maximising images side by side.

DVC: python pipelines/hierarchy.py --config-dir . --config-name params
"""

from pathlib import Path

from _entry import plain, stage

from cnnlab.analysis.hierarchy import run_hierarchy


@stage
def main(cfg) -> None:
    opts = plain(cfg.analysis.hierarchy)
    paths = cfg.paths
    reports = Path(paths.reports)
    metrics = run_hierarchy(opts, Path(paths.models) / opts["experiment"] / "model.ckpt",
                            Path(paths.prepared) / opts["dataset"],
                            [reports / name / "images.pt" for name in opts["images_from"]],
                            reports / "hierarchy")
    for layer, row in metrics.items():
        print(f"hierarchy {layer}: receptive field {row['receptive_field']} px, gradient spread "
              f"{row['gradient_spread']:.2f} px, 90% area {row['gradient_area90']} px")


if __name__ == "__main__":
    main()
