"""The headline of the two other kinds of run, in Chromium at 1280×800 without scrolling:
a table run (its numbers and the real-against-generated marginals) and a labelled run
(the classifier's accuracy and the samples per class); no network request either way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _pages import keep_screenshot, opened

from varfam.cli import main
from varfam.runs.metrics import read_metrics


def _table(path: Path, n: int = 240) -> Path:
    """A small table with numbers, counts, levels, a label column and missing cells."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=n)
    df = pd.DataFrame({
        "height": 170 + 10 * z + 2 * rng.normal(size=n),
        "visits": rng.poisson(np.exp(1.5 + 0.5 * z)),
        "colour": np.where(z > 0.5, "red", np.where(z < -0.5, "blue", "green")),
        "delta": z + 0.1 * rng.normal(size=n),
        "label": np.where(z > 0, "hi", "lo"),
    })
    for name in ("height", "visits", "delta"):
        df[name] = df[name].mask(rng.random(n) < 0.1)
    df.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("table-page")
    out = root / "run"
    assert main(["train", "--data", str(_table(root / "rows.csv")), "--label-column", "label",
                 "--epochs", "3", "--hidden", "16", "--latent-dim", "2", "--out", str(out),
                 "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def labelled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """M2 on 600 digits, 60 of them labelled; its report measured with K = 10."""
    out = tmp_path_factory.mktemp("labelled-page") / "run"
    assert main(["train", "--data", "digits", "--limit", "600", "--labelled", "60", "--epochs",
                 "1", "--hidden", "32", "--latent-dim", "3", "--out", str(out), "--quiet",
                 "--no-report"]) == 0
    assert main(["report", str(out), "--iw", "10", "--limit", "60"]) == 0
    return out


def _line(run: Path) -> dict:
    return [r for r in read_metrics(run)[1] if r.get("source") == "report"][-1]


def test_a_table_run_opens_on_its_numbers_and_marginals(table_run: Path, browser) -> None:
    m = _line(table_run)
    with opened(browser, table_run / "report.html") as p:
        assert p.in_view('[data-metric="test-elbo"]')
        assert f"{m['elbo']:.2f}" in p.text('[data-metric="test-elbo"]')
        assert p.in_view('[data-metric="log-likelihood"]')
        assert f"{m['log_likelihood']:.2f}" in p.text('[data-metric="log-likelihood"]')
        assert p.in_view('#headline img[data-picture="marginals"]')
        # the table's own sections further down: correlations, per-column errors
        assert p.page.locator('img[data-picture="correlations"]').count() == 1
        errors = p.text("#pictures")
        assert "Per-column errors" in errors and "colour" in errors and "RMSE" in errors
        # the columns are a table, not JSON, and the train command reads run.toml
        settings = p.page.locator("#configuration")
        assert settings.locator("table.inner th", has_text="type").count() >= 1
        assert "[model]" in p.text("#train-toml") and "columns = [" in p.text("#train-toml")
        assert p.text("#train-command") == "varfam train --config run.toml"
        keep_screenshot(p.page, "report-table-run.png")


def test_a_labelled_run_opens_on_its_accuracy_and_samples_per_class(labelled_run: Path,
                                                                    browser) -> None:
    m = _line(labelled_run)
    with opened(browser, labelled_run / "report.html") as p:
        assert p.in_view('[data-metric="test-elbo"]')
        assert p.in_view('[data-metric="accuracy"]')
        assert f"{100 * m['accuracy']:.1f} %" in p.text('[data-metric="accuracy"]')
        assert p.in_view('#headline img[data-picture="samples"]')
        assert "Samples per class" in p.text("#headline")
        # the classifier's section: its accuracy and confusion matrix
        assert p.page.locator('img[data-picture="confusion"]').count() == 1
        assert p.text('[data-metric="classifier-accuracy"]') == f"{100 * m['accuracy']:.1f} %"
