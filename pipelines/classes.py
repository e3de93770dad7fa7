"""Stage classes: for each digit, an image maximising its class score, with and without ink.

DVC: python pipelines/classes.py --config-dir . --config-name params
"""

from pathlib import Path

from _entry import plain, stage

from cnnlab.analysis.visualize import run_classes


@stage
def main(cfg) -> None:
    opts = plain(cfg.analysis.classes)
    paths = cfg.paths
    metrics = run_classes(opts, Path(paths.models) / opts["experiment"] / "model.ckpt",
                          Path(paths.prepared) / opts["dataset"], Path(paths.reports) / "classes")
    for variant in ("unconstrained", "few_ink"):
        s = metrics[variant]
        print(f"classes {variant}: min confidence {s['min_confidence']:.4f}, ink fraction "
              f"{s['ink_fraction']:.3f}, correlation with mean digit {s['corr_mean_digit']:.3f}")


if __name__ == "__main__":
    main()
