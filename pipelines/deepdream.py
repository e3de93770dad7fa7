"""Stage deepdream: dream real digits through the lecture CNN and a photo through the backbone.

DVC: python pipelines/deepdream.py --config-dir . --config-name params
"""

from pathlib import Path

from _entry import plain, stage

from cnnlab.analysis.dream import run_deepdream


@stage
def main(cfg) -> None:
    opts = plain(cfg.analysis.deepdream)
    paths = cfg.paths
    result = run_deepdream(
        opts, Path(paths.models) / opts["digits"]["experiment"] / "model.ckpt",
        Path(paths.prepared) / opts["digits"]["dataset"], Path(paths.reports) / "deepdream")
    for name in ("digits", "photo"):
        row = result[name]
        print(f"deepdream {name} {row['network']}:{row['layer']}: activation norm "
              f"x{row['ratio']:.2f} (noise x{row['control_ratio']:.2f}) in {row['seconds']:.1f}s")


if __name__ == "__main__":
    main()
