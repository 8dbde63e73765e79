"""Browser tests: the app under waitress on a free 127.0.0.1 port, driven by Debian's Chromium via Playwright.

Playwright's own browser download is never used (no ``playwright install``):
the tests launch ``/usr/bin/chromium``. A missing Chromium fails the tests
with a clear message instead of skipping them.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from models.settings import PROJECT_ROOT
from web import create_app
from web.server import create_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = PROJECT_ROOT / "test-output" / "screenshots"


@pytest.fixture
def admin_password() -> str:
    return "browser-test-password"


@pytest.fixture
def live_server(settings, database, admin_password):
    """The app served by waitress in a background thread (127.0.0.1 only); yields its base URL."""
    app = create_app(settings.with_(admin_password=admin_password, api_token="b" * 32), database)
    server = create_server(app, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, name="waitress-test", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium (fails, never skips, when it is missing).

    Module scope, not session: Playwright's sync API keeps an event loop running
    while it is open, which would break later tests that call ``asyncio.run()``.
    """
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the browser tests need Debian's 'chromium' "
            "package (apt-get install chromium; scripts/test.sh installs it)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(page):
    """``screenshot(name)`` saves the full page under test-output/screenshots/ (git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
