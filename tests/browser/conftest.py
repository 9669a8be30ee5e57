"""Playwright on Debian's Chromium against a real OpenSSM server and a real agent.

Chromium comes from the system (scripts/install-system-deps installs `chromium`); Playwright's own
browser download is never used. In CI a missing Chromium fails the tests; elsewhere it skips them.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, require
from tests.e2e.harness import Agent, Server, running_system

CHROMIUM = pathlib.Path("/usr/bin/chromium")
VENDOR = REPO_ROOT / "src" / "openssm" / "console" / "static" / "vendor" / "xterm.mjs"
SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(CHROMIUM.exists(), f"Chromium not found at {CHROMIUM} (scripts/install-system-deps installs it)")
    require(VENDOR.exists(), "console assets not built: run `make console-assets` (npm install + copy)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Agent]]:
    with running_system(tmp_path_factory.mktemp("console")) as pair:
        yield pair


def screenshot(page: Any, name: str) -> pathlib.Path:
    """Saved for a human to look at once (artifacts/ is git-ignored)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, server: Server, credentials: tuple[str, str] | None = None) -> None:
    key, secret = credentials or server.admin_credentials
    page.goto(f"{server.endpoint}/console/")
    page.fill("#access-key-id", key)
    page.fill("#secret-access-key", secret)
    page.click("#signin-button")
    page.wait_for_url("**/console/nodes")


def has_horizontal_scroll(page: Any) -> bool:
    """True if the page scrolls sideways or any element sticks out past the viewport (and is clipped)."""
    return bool(
        page.evaluate(
            """() => {
                const width = document.documentElement.clientWidth;
                if (document.documentElement.scrollWidth > width) return true;
                return [...document.querySelectorAll("body *")].some(
                    (e) => e.getClientRects().length && e.getBoundingClientRect().right > width + 1
                );
            }"""
        )
    )
