"""The REST service's /docs page in a real browser (Debian's chromium via Playwright), offline.

Every request that leaves the loopback address is blocked, as on a machine without internet:
the Swagger UI must still draw the API's operations.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_webui_browser import CHROMIUM, CHROMIUM_ARGS, _free_port, wait_until_serving

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        message = f"no chromium at {CHROMIUM}: as root, bash scripts/install_browser.sh installs it"
        if os.environ.get("EMOTION2VEC_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("playwright")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "emotion2vec_plus.cli", "serve", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(process, url + "/healthz", log_path, "the service")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_docs_draw_the_operations_with_no_internet(service):
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def only_loopback(route) -> None:
        if route.request.url.startswith(service):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.route("**/*", only_loopback)
            page.goto(service + "/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            page.screenshot(path=str(Path(__file__).resolve().parent.parent / "test-output" / "rest-docs.png"), full_page=True)
        finally:
            browser.close()
    assert {"/v1/recognize", "/v1/embed", "/v1/similarity"} <= {p.strip().replace("\u200b", "") for p in paths}
    assert blocked == []  # nothing was even asked of the internet
