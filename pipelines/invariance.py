"""Stage invariance: CNN vs dense net on shifted digits and on subsampled-then-restored digits.

DVC: python pipelines/invariance.py --config-dir . --config-name params
"""

from pathlib import Path

from _entry import plain, stage

from cnnlab.analysis.invariance import run_invariance


@stage
def main(cfg) -> None:
    opts = plain(cfg.analysis.invariance)
    paths = cfg.paths
    models = Path(paths.models)
    metrics = run_invariance(
        opts, {role: models / opts[role] / "model.ckpt" for role in ("cnn", "dense")},
        Path(paths.prepared) / opts["dataset"], Path(paths.reports) / "invariance")
    for role in ("cnn", "dense"):
        m = metrics[role]
        print(f"invariance {m['experiment']}: clean {m['clean']:.4f}, mean drop under shifts "
              f"{m['mean_shift_drop']:.3f}, subsampled {m['subsampled']}")


if __name__ == "__main__":
    main()
