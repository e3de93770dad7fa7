"""The offline plots page template: how dvc-render fills it, where DVC finds it, what fails."""

from __future__ import annotations

import re
import sys
import types

import pytest
from dvc_render.html import HTML
from dvc_render.vega import VegaRenderer

from cnnlab import plots_page
from cnnlab.plots_page import PlotsPageError, configured_path, page
from tests.conftest import ROOT


def test_dvc_render_fills_the_template_without_its_cdn_scripts() -> None:
    """dvc-render puts its CDN <script> tags at `{scripts}`; the template has none to fill."""
    filled = (HTML(page("window.vegaEmbed = 1;", "test"), refresh_seconds=5)
              .with_scripts(VegaRenderer.SCRIPTS).with_element('<div id="p">plot</div>').embed())
    assert "cdn.jsdelivr" in VegaRenderer.SCRIPTS and "cdn.jsdelivr" not in filled
    assert "<script>window.vegaEmbed = 1;</script>" in filled
    assert '<div id="p">plot</div>' in filled
    assert '<meta http-equiv="refresh" content="5">' in filled
    assert not re.search(r"\{(plot_divs|refresh_tag|scripts)\}", filled)


def test_a_closing_script_tag_inside_the_bundle_is_escaped() -> None:
    html = page('s = "</script><b>";', "test")
    assert html.count("</script") == 1 and 's = "<\\/script><b>";' in html


def test_a_bundle_holding_a_placeholder_is_refused() -> None:
    with pytest.raises(PlotsPageError, match="placeholders"):
        page("x = '{plot_divs}';", "test")


def test_dvc_config_and_the_makefile_name_the_same_file() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (target,) = re.findall(r"^PLOTS_PAGE := (\S+)$", makefile, flags=re.M)
    assert configured_path(ROOT) == ROOT / target
    assert "install: $(BIN)/.installed $(PLOTS_PAGE)" in makefile  # so `make test` writes it


def test_without_vl_convert_the_error_says_what_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vl_convert", None)  # import fails
    with pytest.raises(PlotsPageError, match=r"^vl-convert-python is not installed: run `make install`"):
        plots_page.bundle()


def test_a_bundle_other_than_the_pinned_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(javascript_bundle=lambda vl_version: "window.vegaEmbed = 1;")
    monkeypatch.setitem(sys.modules, "vl_convert", fake)
    with pytest.raises(PlotsPageError, match=f"not the pinned {plots_page.BUNDLE_SHA256}"):
        plots_page.bundle()
