"""The run's page opens on its headline: at 1280×800, without scrolling, the test ELBO,
log p(x) and a sample picture are in view, and the page asks the network for nothing.
Also: readable at phone width and in dark mode, and printable (buttons hidden)."""

from __future__ import annotations

import re
from pathlib import Path

from _pages import keep_screenshot, opened

from varfam.runs.metrics import read_metrics


def _report_line(run: Path) -> dict:
    return [r for r in read_metrics(run)[1] if r.get("source") == "report"][-1]


def test_the_first_screen_shows_the_numbers_and_a_sample_picture(picture_run: Path,
                                                                 browser) -> None:
    m = _report_line(picture_run)
    with opened(browser, picture_run / "report.html") as p:
        assert p.in_view('[data-metric="test-elbo"]')
        assert f"{m['elbo']:.2f} ± {m['elbo_se']:.2f}" in p.text('[data-metric="test-elbo"]')
        assert p.in_view('[data-metric="log-likelihood"]')
        shown = p.text('[data-metric="log-likelihood"]')
        assert f"{m['log_likelihood']:.2f} ± {m['log_likelihood_se']:.2f}" in shown
        assert f"K = {m['iw']}" in shown
        assert p.in_view('#headline img[data-picture="samples"]')
        assert p.in_view('#headline img[data-picture="reconstructions"]')
        assert p.in_view('[data-metric="active-units"]')
        # the image is really drawn (decoded), not a broken link
        width = p.page.eval_on_selector('#headline img[data-picture="samples"]',
                                        "i => i.complete && i.naturalWidth")
        assert width > 100
        # the configuration is at the bottom, not on the first screen
        assert not p.in_view("#configuration")
        keep_screenshot(p.page, "report-picture-run.png")


def test_phone_width_dark_mode_and_print(picture_run: Path, browser) -> None:
    with opened(browser, picture_run / "report.html", width=390, height=844,
                scheme="dark") as p:
        # one column: nothing wider than the screen except inside the sideways-scrolling tables
        overflow = p.page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= 390
        assert p.in_view('[data-metric="test-elbo"]')
        background = p.page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert sum(int(v) for v in re.findall(r"\d+", background)[:3]) < 150  # dark
        colour = p.page.evaluate("getComputedStyle(document.body).color")
        assert sum(int(v) for v in re.findall(r"\d+", colour)[:3]) > 500  # light text
        p.page.emulate_media(media="print")
        assert not p.page.locator("button.copy").first.is_visible()
        assert not p.page.locator("nav.toc").is_visible()


def test_the_copy_button_copies_the_train_command(picture_run: Path, browser) -> None:
    with opened(browser, picture_run / "report.html") as p:
        command = p.text("#train-command")
        assert command.startswith("varfam train --data digits")
        assert "--limit 600" in command and "--epochs 2" in command
        p.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        p.page.click('button.copy[data-target="train-command"]')
        p.page.wait_for_function("document.querySelector('.copied').textContent === 'copied'")
        assert p.page.evaluate("navigator.clipboard.readText()") == command
