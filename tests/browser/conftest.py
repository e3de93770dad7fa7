"""Browser tests: headless Debian Chromium driven by Selenium, never a downloaded browser.

`make system-deps` installs /usr/bin/chromium and /usr/bin/chromedriver (apt). Without them
these tests are skipped, or fail when CI=true (CI must not pass without looking).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HERE = Path(__file__).resolve().parent
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-quic", "--window-size=1400,1000")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/browser carries the `browser` mark."""
    for item in items:
        if item.path.is_relative_to(HERE) and not item.get_closest_marker("browser"):
            item.add_marker("browser")


def missing_browser() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    return f"{' and '.join(missing)} not installed; fix: make system-deps" if missing else None


@pytest.fixture
def browser(tmp_path_factory: pytest.TempPathFactory,
            monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A headless Chromium (1400x1000) with a fresh profile under pytest's tmp folder."""
    reason = missing_browser()
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}", pytrace=False)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never reach the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER),
                      log_output=str(tmp_path_factory.getbasetemp() / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_window_size(1400, 1000)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
