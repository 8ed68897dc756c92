"""The citizen page and the staff console in Debian's Chromium, driven by Playwright.

The hub and its peers run in a process of their own (stack_process.py). Each
test fails on any error that the page logs to the console or throws.
Screenshots go to tests/browser/output/.

The browser is /usr/bin/chromium, or the executable that LIANBAN_CHROMIUM
names. Without it or the playwright package the tests are skipped, unless
LIANBAN_REQUIRE_BROWSER=1 makes that an error.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demo.client import HubClient

CHROMIUM = Path(os.environ.get("LIANBAN_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parents[2]
OUTPUT = Path(__file__).resolve().parent / "output"
STACK_START_SECONDS = 120
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}

# Chromium logs a failed fetch as a console error of this form.
FAILED_RESOURCE = re.compile(r"the server responded with a status of (\d{3})")


def _missing_browser():
    if not CHROMIUM.exists():
        return (
            f"{CHROMIUM} is missing; install Debian's chromium package "
            "or set LIANBAN_CHROMIUM"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing; install the [test] extra"
    return None


@pytest.fixture(scope="session")
def browser():
    missing = _missing_browser()
    if missing and os.environ.get("LIANBAN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (LIANBAN_REQUIRE_BROWSER=1): {missing}")
    if missing:
        pytest.skip(f"browser tests skipped: {missing}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def stack(browser, tmp_path_factory):
    """Start the seeded hub with its peers; return what the ready file lists."""
    base = tmp_path_factory.mktemp("browser-stack")
    ready_file = base / "ready.json"
    log_path = base / "stack.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.browser.stack_process",
                "--var-dir",
                str(base / "var"),
                "--ready-file",
                str(ready_file),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = _wait_for_ready(process, ready_file, log_path)
        yield ready
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_ready(process, ready_file, log_path):
    deadline = time.monotonic() + STACK_START_SECONDS
    while not ready_file.exists():
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            pytest.fail(
                f"the browser test stack exited with {process.returncode}:\n{tail}"
            )
        if time.monotonic() > deadline:
            pytest.fail(
                f"the browser test stack was not ready in {STACK_START_SECONDS} s"
            )
        time.sleep(0.2)
    return json.loads(ready_file.read_text())


@pytest.fixture
def hub(stack):
    """A client of the hub that signs as the registry and pays in the sandbox."""
    return HubClient(
        stack["hub_url"],
        stack["idp_url"],
        stack["wechatpay_url"],
        stack["registry_secret"],
    )


class PageErrors:
    """Console errors and uncaught exceptions of one page.

    A failed request that a test provokes on purpose is allowed by its status.
    """

    def __init__(self):
        self.messages = []
        self.allowed_statuses = set()

    def on_console(self, message):
        if message.type != "error":
            return
        failed = FAILED_RESOURCE.search(message.text)
        if failed and int(failed.group(1)) in self.allowed_statuses:
            return
        self.messages.append(f"console: {message.text}")

    def on_page_error(self, error):
        self.messages.append(f"page error: {error}")


def _open_page(browser, viewport, request, **options):
    context = browser.new_context(viewport=viewport, locale="zh-CN", **options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = PageErrors()
    page.on("console", errors.on_console)
    page.on("pageerror", errors.on_page_error)
    page.errors = errors
    return context, page


def _check_errors(page):
    assert page.errors.messages == [], "\n".join(page.errors.messages)


@pytest.fixture
def phone_page(browser, request):
    context, page = _open_page(
        browser, PHONE, request, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    yield page
    context.close()
    _check_errors(page)


@pytest.fixture
def second_phone_page(browser, request):
    """Another phone with a session of its own, for a second person at once."""
    context, page = _open_page(
        browser, PHONE, request, device_scale_factor=2, is_mobile=True, has_touch=True
    )
    yield page
    context.close()
    _check_errors(page)


@pytest.fixture
def desktop_page(browser, request):
    context, page = _open_page(browser, DESKTOP, request)
    yield page
    context.close()
    _check_errors(page)


@pytest.fixture(scope="session")
def screenshots():
    """Save a full-page screenshot as output/NAME.png and return its path."""
    OUTPUT.mkdir(exist_ok=True)

    def save(page, name):
        path = OUTPUT / f"{name}.png"
        # A sticky header is drawn where the page is scrolled to.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    return save
