"""``varfam compare`` on what the other commands leave behind (issue 26, item 7): a table
run's likelihood is ``mixed (N columns)``, not its column list, and each evaluation
number comes from the latest eval line that has it (``varfam eval --iw 0`` does not hide
an earlier log p(x))."""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from varfam.cli import main
from varfam.reporting.compare import run_summary


def stdout(*argv: object) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(a) for a in argv]) == 0
    return out.getvalue()


def compared(*runs: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(stdout("compare", *runs, "--csv"))))


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare-table")
    rng = np.random.default_rng(0)
    n = 100
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.poisson(3, n),
                          "c": rng.choice(["x", "y", "z"], n), "d": rng.normal(size=n) + 5})
    frame.loc[::6, "a"] = np.nan
    frame.to_csv(root / "t.csv", index=False)
    out = root / "run"
    assert main(["train", "--data", str(root / "t.csv"), "--epochs", "1", "--hidden", "8",
                 "--latent-dim", "2", "--out", str(out), "--quiet", "--no-report"]) == 0
    return out


def test_a_table_runs_likelihood_is_its_number_of_columns(table_run: Path) -> None:
    assert run_summary(table_run)["likelihood"] == "mixed (4 columns)"
    [row] = compared(table_run)
    assert row["likelihood"] == "mixed (4 columns)"
    markdown = stdout("compare", table_run)
    assert "mixed (4 columns)" in markdown and "dtype" not in markdown


def test_eval_iw_0_does_not_hide_an_earlier_log_likelihood(
        digits_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    stdout("eval", run, "--iw", "5", "--limit", "40")
    [first] = compared(run)
    assert first["log_likelihood"] and first["iw"] == "5" and first["eval_n"] == "40"
    stdout("eval", run, "--iw", "0", "--limit", "30")  # an ELBO-only evaluation afterwards
    [after] = compared(run)
    assert after["log_likelihood"] == first["log_likelihood"]
    assert after["log_likelihood_se"] == first["log_likelihood_se"]
    assert after["iw"] == "5" and after["eval_n"] == "40"  # from the line that measured it
    assert after["active_units"] != ""  # the later line's, which it has too
