"""Write DVC's plots page template with vega, vega-lite and vega-embed inlined, so that the pages
of `dvc plots show` and `dvc plots diff` draw with no network.

dvc-render fills a template's `{scripts}` with CDN <script> tags and its `{plot_divs}` with one
`vegaEmbed(...)` call per plot. This template has no `{scripts}`: the CDN tags go nowhere, and
the calls find `vegaEmbed` in the inline bundle. `.dvc/config` (`plots.html_template`) names the
file, so DVC's own commands use it; `make install` writes it (`python -m cnnlab plots-page`).

The bundle comes from vl-convert-python, pinned with its wheels' hashes in
requirements-data.txt, and is checked here against BUNDLE_SHA256 before it is written.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from cnnlab.core.errors import CnnlabError
from cnnlab.core.paths import project_root

VL_CONVERT = "1.9.0.post1"  # as in requirements-data.txt
VEGA_LITE = "5.21"  # DVC's templates, and .dvc/plots/*.json, declare vega-lite v5 specs
BUNDLE_SHA256 = "9568278d3a5a7f71ceef77e8bf3d586baecb43ea9589fb950423cc03908fca39"
FIX = "run `make install`"  # it installs vl-convert-python, then writes the page
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")  # what dvc-render replaces

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- %(versions)s, inline (cnnlab plots-page): no CDN, no network -->
    <script>%(bundle)s</script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


class PlotsPageError(CnnlabError):
    """The vega bundle cannot be made: vl-convert-python missing, or not the pinned one."""


def bundle() -> tuple[str, str]:
    """The pinned vega + vega-lite + vega-embed bundle (globals `vega`, `vegaLite`, `vegaEmbed`)
    and a line naming its versions; raises unless it hashes to BUNDLE_SHA256."""
    try:
        import vl_convert
    except ImportError as exc:
        raise PlotsPageError(f"vl-convert-python is not installed: {FIX}") from exc
    code = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    digest = hashlib.sha256(code.encode()).hexdigest()
    if digest != BUNDLE_SHA256:
        raise PlotsPageError(f"the vega bundle of vl-convert-python hashes to {digest}, not the pinned "
                             f"{BUNDLE_SHA256} (vl-convert-python=={VL_CONVERT} expected): {FIX}")
    versions = (f"vega {vl_convert.get_vega_version()}, vega-lite {VEGA_LITE}, "
                f"vega-embed {vl_convert.get_vega_embed_version()}, by vl-convert-python {VL_CONVERT}")
    return code, versions


def page(code: str, versions: str) -> str:
    """The template: `code` inline in one <script>, which `</script` inside it must not close."""
    found = [p for p in PLACEHOLDERS if p in code]
    if found:  # dvc-render would replace them inside the bundle
        raise PlotsPageError(f"the vega bundle holds dvc-render's placeholders {found}")
    return PAGE % {"bundle": code.replace("</script", "<\\/script"), "versions": versions}


def configured_path(root: Path) -> Path:
    """The template file that `.dvc/config` names (`plots.html_template`, relative to .dvc/)."""
    from configobj import ConfigObj

    value = ConfigObj(str(root / ".dvc" / "config")).get("plots", {}).get("html_template")
    if not value:
        raise PlotsPageError(f"{root / '.dvc' / 'config'} sets no plots.html_template")
    return root / ".dvc" / value


def write(out: Path) -> Path:
    """Write the template to `out` (always: make compares its time with its sources')."""
    from cnnlab.core.io import write_text

    text = page(*bundle())
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, text)  # atomic: a `dvc plots` meanwhile reads the old page or the new one
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path,
                        help="where to write it (default: plots.html_template of .dvc/config)")


def run(args: argparse.Namespace) -> int:
    out = write(args.out or configured_path(project_root()))
    print(f"wrote {out}")
    return 0
