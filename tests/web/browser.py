"""Headless Debian Chromium driven by Selenium (scripts/ensure-chromium.sh installs both)."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


def missing_browser() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for p in (CHROMIUM, CHROMEDRIVER):
        if not p.exists():
            return (f"{p} not found: run scripts/ensure-chromium.sh "
                    "(apt-get install chromium chromium-driver) for the browser tests")
    return None


def chrome() -> Iterator[Any]:
    why = missing_browser()
    if why:
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> None:
    """NAME.png: into docs/img/ (the docs use them) with EDGE_AGENT_DOC_SCREENSHOTS=1
    (``make screenshots``), else into a temporary directory, so a test run leaves the work
    tree as it was."""
    out = DOCS_IMG if os.environ.get("EDGE_AGENT_DOC_SCREENSHOTS") == "1" else Path(
        tempfile.gettempdir()) / "edge-agent-screenshots"
    out.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(out / f"{name}.png"))


def http(url: str, data: Any = None, headers: dict[str, str] | None = None
         ) -> tuple[int, str, dict[str, str]]:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers={
        "Content-Type": "application/json", **(headers or {})},
        method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return int(resp.status), resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(), dict(exc.headers)
