"""Driving Debian's Chromium through its chromedriver in tests: the browser, screenshots, logging in."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from console.sessions import Sessions
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# For a browser test module's ``pytestmark``: skipped on a developer's machine without the browser;
# in CI (which installs it) a missing browser fails.
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
)

WAIT_SECONDS = 30


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--window-size=1400,900",
    ):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    directory = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def log_in(driver, base_url: str, secret: str) -> None:
    """Open a one-time login link signed with the console's ``secret``, as an operator opens the one
    `stack up` prints; wait until the page shows who is logged in."""
    sessions = Sessions(secret.encode(), session_seconds=600, link_seconds=60)
    driver.get(f"{base_url}/login?token={sessions.link_token()}")
    click(driver, By.ID, "login-link")  # opening the link shows a button: a preview never logs in
    WebDriverWait(driver, WAIT_SECONDS).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "who"), "console-login")
    )


def wait_for_text(driver, text: str) -> None:
    WebDriverWait(driver, WAIT_SECONDS).until(expected_conditions.text_to_be_present_in_element((By.ID, "view"), text))


def click(driver, by: str, value: str) -> None:
    """Click the element once it is there. Polling pages redraw every 2 s, so an element found a moment
    ago may be gone (stale): find it again and retry until the deadline."""

    def clicked(d) -> bool:
        d.find_element(by, value).click()
        return True

    WebDriverWait(
        driver, WAIT_SECONDS, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    ).until(clicked, f"clicking {value}")


def wait_until(driver, condition, what: str, timeout: float = WAIT_SECONDS) -> None:
    """Wait for ``condition(driver)``; elements going stale in a redraw count as "not yet"."""
    WebDriverWait(driver, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        condition, what
    )
