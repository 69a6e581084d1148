"""Helpers of the page tests: small runs, and Chromium at a given screen size.

The browser is Debian's Chromium (/usr/bin/chromium, or $VARFAM_CHROMIUM) driven by
Playwright, as for the explorer; tests that need it are skipped, with the reason, where
either is missing. A page is opened from its file (``file://``); every request it makes
is recorded, and any that is not the file itself or an inline ``data:`` URL is refused
(and so shows up in :attr:`Opened.requests`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from varfam.cli import main

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: The screen of the "without scrolling" tests.
SCREEN = {"width": 1280, "height": 800}
#: Small and quick: a few hundred digits, two epochs.
SMALL = ["--epochs", "2", "--hidden", "32", "--latent-dim", "4", "--limit", "600", "--quiet"]


def train(out: Path, *args: str) -> Path:
    """``varfam train ... --out OUT`` with :data:`SMALL`'s settings (the report included)."""
    assert main(["train", *args, *SMALL, "--out", str(out)]) == 0
    return out


@dataclass
class Opened:
    """A page opened in Chromium: the Playwright page, the URLs it asked for beyond its own
    file and ``data:`` URLs, and the errors it raised."""

    page: Any
    url: str
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def in_view(self, selector: str) -> bool:
        """Whether the first element matching ``selector`` is shown, whole, on the first
        screen (no scrolling)."""
        element = self.page.locator(selector).first
        if not element.count() or not element.is_visible():
            return False
        box = element.bounding_box()
        size = self.page.viewport_size
        return (box is not None and box["x"] >= 0 and box["y"] >= 0 and box["width"] > 0
                and box["height"] > 0 and box["x"] + box["width"] <= size["width"] + 0.5
                and box["y"] + box["height"] <= size["height"] + 0.5)

    def text(self, selector: str) -> str:
        return self.page.locator(selector).first.inner_text()


def chromium() -> str:
    path = os.environ.get("VARFAM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.skip(f"Chromium not found at {path} (apt-get install chromium, "
                    "or set VARFAM_CHROMIUM to its path)")
    return path


@contextmanager
def opened(browser: Any, path: Path, *, width: int = SCREEN["width"],
           height: int = SCREEN["height"], scheme: str = "light") -> Iterator[Opened]:
    """``path`` in a fresh page of ``width`` × ``height`` CSS pixels; on leaving, no
    outside request and no page or console error may have happened."""
    context = browser.new_context(viewport={"width": width, "height": height},
                                  color_scheme=scheme)
    page = context.new_page()
    url = path.resolve().as_uri()
    seen = Opened(page, url)

    def route(r: Any) -> None:
        if r.request.url == url or r.request.url.startswith("data:"):
            r.continue_()
        else:
            seen.requests.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page.on("request", lambda r: None if r.url == url or r.url.startswith("data:")
            else seen.requests.append(r.url))
    page.on("pageerror", lambda e: seen.problems.append(f"page error: {e}"))
    page.on("console", lambda m: seen.problems.append(m.text) if m.type == "error" else None)
    try:
        page.goto(url)
        page.wait_for_load_state("load")
        yield seen
    finally:
        context.close()
    assert not seen.requests, f"the page asked the network for {seen.requests}"
    assert not seen.problems, seen.problems


def keep_screenshot(page: Any, name: str) -> None:
    """With ``VARFAM_REPORT_SCREENSHOTS=DIR``, keep the first screen as ``DIR/name``."""
    folder = os.environ.get("VARFAM_REPORT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))
