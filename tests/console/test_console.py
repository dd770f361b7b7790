"""The console in a real browser: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import FIXTURES, REPO, free_port, quarry_cmd, running

pytestmark = pytest.mark.slow
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if os.environ.get("QUARRY_SKIP_BROWSER") == "1":
        pytest.skip("QUARRY_SKIP_BROWSER=1")
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is missing: ./test.sh installs it (apt)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def test_console_lists_datasets_and_reads_lines(browser: Any, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = quarry_cmd("serve", str(FIXTURES / "lines" / "frankenstein.txt"), "--name", "demo",
                      "--data", str(tmp_path / "d"), "--port", str(port))
    errors: list[str] = []
    with running(args, f"{url}/healthz"):
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/")
        page.wait_for_selector("body[data-ready]")
        assert page.locator("main table").inner_text().count("demo") >= 1
        page.click("text=demo")
        page.wait_for_selector("form.query")
        page.fill("input[name=start]", "2")
        page.fill("input[name=count]", "3")
        page.click("button[type=submit]")
        page.wait_for_function("document.getElementById('results').textContent.length > 0")
        text = page.locator("#results").inner_text()
        assert "Frankenstein" in text
        page.goto(f"{url}/#/events")
        page.wait_for_selector("body[data-ready='#/events']")
        ARTIFACTS.mkdir(exist_ok=True)
        page.goto(f"{url}/#/d/demo")
        page.wait_for_selector("form.query")
        page.screenshot(path=str(ARTIFACTS / "console-lines.png"), full_page=True)
        page.close()
    assert not errors, errors
