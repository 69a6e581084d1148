"""`varfam compare RUN RUN RUN --html FILE`: one page with the numbers (best marked), the
curves overlaid, the sample grids side by side and the settings that differ; in Chromium
at 1280×800 with no network request. The text and CSV gain the sample-quality and
disentanglement columns where a run recorded them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import torch
from _pages import keep_screenshot, opened

import varfam
from varfam.cli import main
from varfam.data import load_data
from varfam.reporting.compare import config_differences, run_summary
from varfam.reporting.page import append_eval_line


def _python_run(out: Path, seed: int, **model: object) -> Path:
    """A one-epoch run trained from Python (no pictures: the page draws its samples)."""
    data = load_data(varfam.DataConfig(source="digits", limit=300))
    torch.manual_seed(seed)
    net = varfam.VAE.for_data(data, hidden=(16,), latent_dim=3, **model)
    varfam.train(net, data, epochs=2, batch_size=64, seed=seed, out=out,
                 objective_options={"beta": 0.5} if seed == 1 else {})
    return out


@pytest.fixture(scope="module")
def runs(picture_run: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("compare-page")
    second = _python_run(root / "beta", 1)
    third = _python_run(root / "full", 2, family="full")
    assert main(["eval", str(second), "--iw", "5", "--limit", "30"]) == 0
    # sample quality and disentanglement as `varfam eval --samples/--factors` records them
    for run, fd in ((picture_run, 12.0), (second, 7.5)):
        for sampler, value in (("floor", 1.0), ("prior", fd), ("gmm", fd - 2)):
            append_eval_line(run, {"fd": value, "kid": value / 1000, "kid_std": 0.0001,
                                   "precision": 0.5, "recall": 0.4 + value / 100, "n": 60,
                                   "n_reference": 300}, source="samples", sampler=sampler)
    append_eval_line(third, {"mig": 0.2, "dci_disentanglement": 0.3, "sap": 0.05,
                             "factor_vae_score": 0.6, "factor_rows": 300}, source="factors")
    return [picture_run, second, third]


def test_the_summary_and_the_text_outputs(runs: list[Path], capsys: pytest.CaptureFixture,
                                          ) -> None:
    first, second, third = (run_summary(r) for r in runs)
    assert first["sampler"] == "gmm" and first["fd"] == 10.0  # its best sampler by FD
    assert second["fd"] == 5.5 and third["fd"] is None and third["mig"] == 0.2
    assert second["log_likelihood"] is not None  # the bounds line, not the samples lines
    capsys.readouterr()
    assert main(["compare", *map(str, runs)]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    for column in ("test ELBO", "FD", "KID", "precision", "recall", "MIG", "FactorVAE"):
        assert f" {column} |" in header, column
    assert main(["compare", *map(str, runs), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["fd"] for r in rows] == ["10.0", "5.5", ""] and rows[2]["mig"] == "0.2"
    diffs = dict(config_differences(runs))
    assert diffs["model.family"] == ["diagonal", "diagonal", "full"]
    assert diffs["train.objective_options.beta"] == [None, 0.5, None]
    assert "model.likelihood" not in diffs  # the same in every run
    # who chose a setting (varfam or the user) is not a difference between runs
    assert not [k for k in diffs if k.endswith("chosen_from_data")]


def test_the_page_in_chromium(runs: list[Path], tmp_path: Path, browser) -> None:
    page_file = tmp_path / "compare.html"
    assert main(["compare", *map(str, runs), "--html", str(page_file)]) == 0
    with opened(browser, page_file) as p:
        assert p.in_view("#numbers table.bounds")
        assert p.in_view("#numbers table.quality")

        def column(table: str, name: str) -> list:
            heads = p.page.eval_on_selector_all(f"#numbers table.{table} thead th",
                                                "h => h.map(x => x.textContent)")
            rows = p.page.locator(f"#numbers table.{table} tbody tr")
            assert rows.count() == 3
            return [rows.nth(r).locator("td").nth(heads.index(name)) for r in range(3)]

        fd = column("quality", "FD")
        assert "best" in fd[1].get_attribute("class")  # 5.5 < 10
        assert "best" not in (fd[0].get_attribute("class") or "")
        elbos = [run_summary(r)["test_elbo"] for r in runs]
        best = max(range(3), key=lambda i: elbos[i])
        elbo = column("bounds", "test ELBO")
        assert "best" in elbo[best].get_attribute("class")
        assert elbo[best].inner_text().startswith(f"{elbos[best]:.2f}")
        parts = column("bounds", "family · prior · likelihood · objective")
        assert "full · standard · bernoulli · elbo" in parts[2].inner_text()
        curves = p.page.locator('img[data-picture="curves"]')
        assert curves.evaluate("i => i.complete && i.naturalWidth") > 500
        figures = p.page.locator("#samples figure")
        assert figures.count() == 3
        for k in range(3):
            assert figures.nth(k).locator("img").evaluate("i => i.naturalWidth") > 50
        settings = p.text("#configuration")
        assert "model.family" in settings and "full" in settings
        keep_screenshot(p.page, "compare-page.png")


def test_user_errors(runs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", str(runs[0]), "--html", str(tmp_path / "x.txt")]) == 2
    assert "must end in .html" in capsys.readouterr().err
