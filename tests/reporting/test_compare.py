"""`varfam compare`: a table (markdown or CSV) of runs' configuration and metrics, and a plot."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from PIL import Image

from varfam.cli import main
from varfam.reporting.page import read_metrics


@pytest.fixture(scope="module")
def second_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "digits-beta"
    assert main(["train", "--data", "digits", "--epochs", "1", "--hidden", "32", "--latent-dim",
                 "3", "--beta", "0.5", "--out", str(out), "--quiet", "--seed", "1"]) == 0
    assert main(["eval", str(out), "--iw", "10", "--limit", "50", "--json"]) == 0
    return out


def test_compare_prints_a_markdown_table_of_both_runs(
    digits_run: Path, second_run: Path, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    assert main(["compare", str(digits_run), str(second_run)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| run | family | prior |") and "log p(x) (IS)" in lines[0]
    assert len(lines) == 4  # header, rule, one row per run
    assert str(digits_run) in lines[2] and str(second_run) in lines[3]
    row = [c.strip() for c in lines[3].strip("|").split("|")]
    assert row[1] == "diagonal" and row[4] == "elbo (beta=0.5)" and row[5] == "3"
    # the latest eval line of the second run is the one its fixture wrote: K = 10
    _, evals = read_metrics(second_run)
    assert row[9] == "10" and row[8].startswith(f"{evals[-1]['log_likelihood']:.2f} ± ")


def test_compare_csv_and_plot(digits_run: Path, second_run: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    plot = tmp_path / "curves.png"
    assert main(["compare", str(digits_run), str(second_run), "--csv", "--plot", str(plot)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["run"] for r in rows] == [str(digits_run), str(second_run)]
    assert rows[0]["epochs"] == "2" and rows[1]["epochs"] == "1"
    assert float(rows[1]["test_elbo"]) < 0 and float(rows[1]["seconds_per_epoch"]) > 0
    assert int(rows[1]["eval_n"]) == 50
    assert Image.open(plot).size[0] > 100


def test_compare_user_errors(digits_run: Path, tmp_path: Path) -> None:
    assert main(["compare", str(digits_run), str(tmp_path / "missing")]) == 2
    assert main(["compare", str(digits_run), "--plot", str(tmp_path / "x.jpg")]) == 2
