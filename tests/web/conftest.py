"""A running stack for the web tests, and a headless Chromium (Debian's, never a downloaded one)."""

import os
import shutil
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[2] / "docs"
CHROMIUM = "/usr/bin/chromium"  # Debian's package `chromium`
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FAST = {"SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"}
# Fruits of 5-8 s x 0.2: a fruit runs at least 1 s, twice the stream's 0.5 s between looks at the database,
# so every state a fruit goes through reaches the page.
STEADY = {**FAST, "SALAD_EXECUTION_TIME_MIN": "5", "SALAD_EXECUTION_TIME_MAX": "8"}


@pytest.fixture
def stack(make_stack, postgres_url):
    """Shared, Master and two workers of two slots on a fresh PostgreSQL database; fruits take 1-1.6 s."""
    return make_stack(postgres_url, workers=2, slots=2, time_scale=0.2, env=STEADY)


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light",
                                  locale="en-GB", timezone_id="UTC")
    page = context.new_page()
    page.set_default_timeout(15_000)
    script_errors = []
    page.on("pageerror", lambda error: script_errors.append(error))
    yield page
    context.close()
    assert not script_errors, f"the page's script failed: {script_errors}"


def screenshot(page, folder: Path, name: str) -> None:
    """A picture of the whole page in the test's folder and, with SALAD_UPDATE_SCREENSHOT set, in docs/ (the
    README shows them)."""
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring in the picture
    shot = folder / name
    page.screenshot(path=shot, full_page=True, animations="disabled")
    assert shot.stat().st_size > 10_000
    if os.environ.get("SALAD_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, DOCS / name)
