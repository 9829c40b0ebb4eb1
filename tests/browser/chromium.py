"""Headless Chromium for the browser tests: Debian's chromium driven through its
chromium-driver by Selenium (`just setup-browser` installs both; Selenium's own browser
download is never used). Screenshots go to MCSV_TEST_ARTIFACTS (default tests/artifacts/,
which git ignores)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
)
ARTIFACTS = Path(
    os.environ.get("MCSV_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts"
)


@contextmanager
def chromium(
    width: int = 1366, height: int = 900, phone: bool = False
) -> Iterator[webdriver.Chrome]:
    """A headless Chromium showing pages this size, quit when the block ends. A phone's
    screen is emulated (a window cannot be made that narrow), touch and all."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    if phone:
        metrics = {"width": width, "height": height, "pixelRatio": 2.0, "touch": True}
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": metrics})
    else:
        options.add_argument(f"--window-size={width},{height}")
    browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def screenshot(browser: webdriver.Chrome, name: str) -> Path:
    """Saves the whole page (not only what the window shows) as ARTIFACTS/<name>.png, and
    returns the path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": page["width"],
                     "height": min(page["height"], 6000), "scale": 1},
        },
    )  # fmt: skip
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
