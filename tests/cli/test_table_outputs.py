"""Outputs that fit the data (issue 26, items 4 and 7): a table run makes rows, never
pictures (decode writes rows in the table's units to .csv); reconstruct and interpolate
refuse data of another shape in one line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from varfam.cli import main
from varfam.data.tables import from_model_units
from varfam.runs.folder import open_run


def digest(folder: Path) -> str:
    """One hash of every file's name and bytes under ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def fails(capsys: pytest.CaptureFixture[str], *argv: object) -> str:
    """The one-line error of a command that must fail with exit code 2."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("varfam: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch run on a small CSV with holes (real, positive, count, categorical)."""
    root = tmp_path_factory.mktemp("table-outputs")
    rng = np.random.default_rng(0)
    n = 120
    z = rng.normal(size=n)
    frame = pd.DataFrame({
        "height": 170 + 10 * z,
        "visits": rng.poisson(np.exp(1.5 + 0.3 * z)),
        "colour": np.where(z > 0, "red", "blue"),
        "delta": z + 0.1 * rng.normal(size=n),
    })
    frame["height"] = frame["height"].mask(rng.random(n) < 0.2)
    frame.to_csv(root / "t.csv", index=False)
    out = root / "run"
    assert main(["train", "--data", str(root / "t.csv"), "--epochs", "1", "--hidden", "8",
                 "--latent-dim", "2", "--out", str(out), "--quiet", "--no-report"]) == 0
    return out


# ------------------------------------------------------------------ a table run makes rows
def test_decode_writes_table_rows_in_the_original_units(table_run: Path, tmp_path: Path) -> None:
    z = np.random.default_rng(1).normal(size=(6, 2)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    assert main(["decode", str(table_run), "--latents", str(tmp_path / "z.npy"),
                 "-o", str(tmp_path / "rows.csv")]) == 0
    rows = pd.read_csv(tmp_path / "rows.csv")
    model, _ = open_run(table_run)
    with torch.no_grad():
        mean = model.decode(torch.from_numpy(z)).mean
    expected = from_model_units(mean, list(model.likelihood.columns))
    assert list(rows.columns) == ["height", "visits", "colour", "delta"]
    assert set(rows["colour"]) <= {"red", "blue"}  # levels, not codes
    assert rows["height"].between(100, 250).all()  # centimetres, not standardized logs
    np.testing.assert_allclose(rows["height"], expected["height"], rtol=1e-9)
    np.testing.assert_allclose(rows["delta"], expected["delta"], rtol=1e-9)
    assert rows["colour"].tolist() == expected["colour"].tolist()
    # .npy stays the model's array (model units)
    assert main(["decode", str(table_run), "--latents", str(tmp_path / "z.npy"),
                 "-o", str(tmp_path / "rows.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "rows.npy"), mean.numpy(), rtol=1e-6)


@pytest.mark.parametrize("command", ["decode", "reconstruct", "interpolate", "sample"])
def test_a_table_run_refuses_pictures_in_one_line(
        command: str, table_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "z.npy", np.zeros((3, 2), dtype=np.float32))
    before = digest(table_run)
    extra = ["--latents", str(tmp_path / "z.npy")] if command == "decode" else []
    msg = fails(capsys, command, table_run, *extra, "-o", tmp_path / "out.png")
    assert "table run" in msg and "not pictures" in msg and ".npy" in msg
    assert ".csv" in msg  # where rows in the table's units come from
    assert not (tmp_path / "out.png").exists()
    assert digest(table_run) == before


def test_a_table_run_still_writes_arrays(table_run: Path, tmp_path: Path) -> None:
    assert main(["reconstruct", str(table_run), "-n", "3", "-o", str(tmp_path / "r.npy")]) == 0
    assert np.load(tmp_path / "r.npy").shape[1:] == (4,)
    assert main(["interpolate", str(table_run), "--pairs", "1", "--steps", "3",
                 "-o", str(tmp_path / "i.npy")]) == 0
    assert np.load(tmp_path / "i.npy").shape == (3, 4)


# ------------------------------------------------------------------ data of another shape
@pytest.mark.parametrize("command", ["reconstruct", "interpolate"])
def test_data_of_another_shape_is_one_line(
        command: str, digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "small.npy", np.random.default_rng(0).random((30, 1, 6, 6), np.float32))
    before = digest(digits_run)
    msg = fails(capsys, command, digits_run, "--data", tmp_path / "small.npy",
                "-o", tmp_path / "out.png")
    assert "(1, 6, 6)" in msg and "(1, 8, 8)" in msg
    assert not (tmp_path / "out.png").exists()
    assert digest(digits_run) == before
