"""DVC's plots page as a reader opens it offline: `dvc plots show` and `dvc plots diff` of the
committed plots/, written through .dvc/config's template, opened from file:// in Chromium with
the network off. Every plot must draw its lines, with no error in the console."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cnnlab.plots_page import FIX, configured_path
from tests.conftest import ROOT

# Before any script of the page: keep console errors and warnings, and uncaught errors.
RECORD_CONSOLE = """
window.__problems = [];
for (const level of ["error", "warn"]) {
  const original = console[level];
  console[level] = (...args) => { window.__problems.push(level + ": " + args.join(" ")); original(...args); };
}
window.addEventListener("error", e => window.__problems.push("uncaught: " + e.message));
"""
# What the console may say: vega-lite 5 (the version of DVC's specs) compiles to a Vega v5 spec,
# drawn by vega 6; the hover layer of DVC's `linear` template has no points until hovered.
HARMLESS = (r"warn: The compiled spec uses Vega v5, but current version is v6\.",
            r'warn: WARN Infinite extent for field "[^"]+": \[Infinity, -Infinity\]$')
# Per plot div: "pending" until vega-embed has drawn it (SVG, its default renderer), then its
# drawn lines: the paths of its line marks that join two points or more ("M..L..").
DRAWN = """
return [...document.querySelectorAll("body > div[id]")].map(div => {
  const svg = div.querySelector(".vega-embed svg.marks");
  if (!svg) return [div.id, "pending"];
  const paths = [...svg.querySelectorAll(".mark-line.role-mark path")];
  return [div.id, paths.filter(p => /^M[^M]*L/.test(p.getAttribute("d") || "")).length];
});
"""


@pytest.fixture(scope="module")
def template() -> Path:
    """The page template that `make install` writes; the one-line fix when it is missing."""
    path = configured_path(ROOT)
    if not path.is_file():
        pytest.fail(f"{path.relative_to(ROOT)} is missing: {FIX}", pytrace=False)
    return path


def dvc_plots(*args: str, out: Path) -> Path:
    """Run `dvc plots <args> -o out` in the repository; the page it wrote."""
    subprocess.run([sys.executable, "-m", "dvc", "plots", *args, "-o", str(out)], cwd=ROOT,
                   check=True, capture_output=True, text=True, timeout=120)
    return out / "index.html"


def open_offline(browser: WebDriver, page: Path, screenshot: Path,
                 wait: bool = True) -> dict[str, int | str]:
    """Open `page` with the network off; {plot div id: lines drawn}, once all have drawn."""
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CONSOLE})
    browser.get(page.as_uri())
    try:
        if wait:
            WebDriverWait(browser, 30).until(
                lambda d: all(n != "pending" for _, n in d.execute_script(DRAWN)))
    finally:  # the whole page, kept under pytest's tmp folder
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1400, min(max(height + 200, 1000), 12000))  # + the window frame
        browser.save_screenshot(str(screenshot))
    return dict(browser.execute_script(DRAWN))


@pytest.mark.parametrize("command", [("show",), ("diff", "HEAD")], ids=["show", "diff"])
def test_dvc_plots_page_draws_every_plot_offline(browser: WebDriver, tmp_path: Path,
                                                 template: Path, command: tuple[str, ...]) -> None:
    page = dvc_plots(*command, out=tmp_path / "dvc_plots")
    html = page.read_text(encoding="utf8")
    assert not re.findall(r"<script[^>]+src=", html), "the page loads a script from elsewhere"
    assert "inline (cnnlab plots-page): no CDN" in html  # DVC used .dvc/config's template
    plots = len(re.findall(r"vegaEmbed\('#", html))
    tracked = subprocess.run(["git", "ls-files", "plots/*.csv"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    assert plots == len(tracked)  # one plot per committed CSV, each drawn below

    drawn = open_offline(browser, page, tmp_path / f"dvc_plots_{command[0]}.png")
    assert len(drawn) == plots
    blank = {name: n for name, n in drawn.items() if not isinstance(n, int) or n < 1}
    assert not blank, f"plots that drew no lines: {blank}"
    problems = browser.execute_script("return window.__problems")
    assert not [p for p in problems if not any(re.match(k, p) for k in HARMLESS)], problems
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0


def test_the_network_is_off_for_the_page(browser: WebDriver, tmp_path: Path) -> None:
    """The control: dvc-render's own page, which takes vega from a CDN, draws nothing here."""
    from dvc_render.html import HTML
    from dvc_render.vega import VegaRenderer

    page = tmp_path / "cdn.html"
    div = VegaRenderer.DIV.format(id="p", partial='{"mark": "line"}')
    page.write_text(HTML().with_scripts(VegaRenderer.SCRIPTS).with_element(div).embed())
    assert open_offline(browser, page, tmp_path / "cdn.png", wait=False) == {"p": "pending"}
    assert "uncaught: Uncaught ReferenceError: vegaEmbed is not defined" in browser.execute_script(
        "return window.__problems")
