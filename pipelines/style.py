"""Stage style: Gatys style transfer on the image backbone; losses before and after.

DVC: python pipelines/style.py --config-dir . --config-name params
"""

from pathlib import Path

from _entry import plain, stage

from cnnlab.analysis.style import run_style


@stage
def main(cfg) -> None:
    numbers = run_style(plain(cfg.analysis.style), Path(cfg.paths.reports) / "style")
    print(f"style: style loss /{numbers['style_drop']:.1f}, content loss at "
          f"{numbers['content_fraction']:.0%} of the style image's, in {numbers['seconds']:.1f}s")


if __name__ == "__main__":
    main()
