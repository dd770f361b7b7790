"""/docs and /redoc in a real browser with no network beyond the server: the vendored
Swagger UI and ReDoc must render the API's operations (they were blank offline when their
scripts came from a CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.console.test_console import ARTIFACTS, browser  # noqa: F401 - a fixture
from tests.support import FIXTURES, free_port, quarry_cmd, running

pytestmark = pytest.mark.slow


def _offline_page(browser: Any, origin: str) -> tuple[Any, list[str], list[str]]:  # noqa: F811
    """A page whose requests to anything but ``origin`` are refused (and noted)."""
    errors: list[str] = []
    blocked: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def only_the_server(route: Any) -> None:
        url = route.request.url
        if url.startswith(origin + "/") or url.startswith("data:") or url.startswith("blob:"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("internetdisconnected")

    page.route("**/*", only_the_server)
    return page, errors, blocked


def test_docs_and_redoc_render_offline(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = quarry_cmd("serve", str(FIXTURES / "lines" / "frankenstein.txt"), "--name", "demo",
                      "--data", str(tmp_path / "d"), "--port", str(port))
    with running(args, f"{url}/healthz"):
        page, errors, blocked = _offline_page(browser, url)
        page.goto(f"{url}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=15_000)
        paths = page.eval_on_selector_all(".opblock-summary-path",
                                          "els => els.map(e => e.textContent)")
        assert any("/lines/" in p for p in paths), paths
        assert any(p.startswith("/datasets") for p in paths), paths
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "apidocs-swagger.png"))
        page.close()
        assert not blocked, blocked
        assert not errors, errors

        page, errors, blocked = _offline_page(browser, url)
        page.goto(f"{url}/redoc")
        page.wait_for_selector("[data-section-id^='operation/']", state="attached",
                               timeout=15_000)
        assert page.locator("[data-section-id^='operation/']").count() > 5
        page.screenshot(path=str(ARTIFACTS / "apidocs-redoc.png"))
        page.close()
        assert not blocked, blocked
        assert not errors, errors
