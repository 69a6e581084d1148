"""Options are applied or refused, never only recorded (issue 26, items 3 and 5): each
refusal is one line, before anything is created."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import varfam
from varfam.cli import main


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    pd = pytest.importorskip("pandas")
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.drop(columns=["target"])
    frame.iloc[::7, 2] = np.nan  # holes
    path = tmp_path_factory.mktemp("table") / "wine.csv"
    pd.DataFrame(frame).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("flags", [["--likelihood", "bernoulli"], ["--arch", "mlp"],
                                   ["--arch", "gated-mlp"], ["--likelihood", "gaussian"]])
def test_a_table_refuses_parts_that_cannot_read_it(table: Path, tmp_path: Path, capsys,
                                                   flags: list[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(table), *flags, "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a table" in err and f"leave {flags[0]} out" in err
    assert not out.exists()  # refused before anything was created


def test_a_table_chooses_its_parts_when_none_are_given(table: Path) -> None:
    data = varfam.load_data(str(table))
    model = varfam.VAE.for_data(data, hidden=(8,), latent_dim=2)
    assert (model.config.likelihood, model.config.arch) == ("mixed", "tabular")
    images = varfam.VAE.for_data(varfam.load_data("digits"), hidden=(8,), latent_dim=2)
    assert (images.config.likelihood, images.config.arch) == ("bernoulli", "mlp")


@pytest.mark.parametrize("flag", ["--label-column", "--column-types"])
def test_table_options_on_images_are_refused(tmp_path: Path, capsys, flag: str) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", flag, "label", "--epochs", "1",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a table" in err and not out.exists()
