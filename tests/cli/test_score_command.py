"""``varfam score RUN`` (issue 28): the CSV row by row against the Python call, and bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

import varfam
from varfam.cli import main
from varfam.evaluation.scores import score


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_score_csv_matches_the_python_call(digits_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "scores.csv"
    code = main(["score", str(digits_run), "--data", "digits", "--method", "ratio",
                 "-o", str(out), "--contamination", "0.1", "--k", "8", "--option", "epochs=1"])
    assert code == 0, capsys.readouterr().err
    rows = _read(out)
    ds = varfam.load_dataset("digits")
    n = ds.train.shape[0] + ds.test.shape[0]
    x = torch.empty(n, *ds.data_shape)
    x[ds.train_index], x[ds.test_index] = ds.train, ds.test
    labels = torch.empty(n, dtype=torch.long)
    labels[ds.train_index], labels[ds.test_index] = ds.train_labels, ds.test_labels
    expected = score(varfam.load(digits_run), x, "ratio", train=ds.train, epochs=1, k=8, seed=0)
    assert [int(r["index"]) for r in rows] == list(range(n))  # the rows of the source, in order
    assert [int(r["label"]) for r in rows] == labels.tolist()
    assert np.array_equal([float(r["score"]) for r in rows], expected.numpy())
    flagged = [r["anomalous"] == "1" for r in rows]
    assert sum(flagged) == round(0.1 * n)
    assert min(float(r["score"]) for r, f in zip(rows, flagged) if f) > max(
        float(r["score"]) for r, f in zip(rows, flagged) if not f)


def test_score_test_split_with_a_threshold(digits_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "nll.csv"
    assert main(["score", str(digits_run), "--split", "test", "--method", "nll", "--k", "4",
                 "-o", str(out), "--threshold", "30"]) == 0
    rows = _read(out)
    ds = varfam.load_dataset("digits")
    assert len(rows) == ds.test.shape[0]
    assert sorted(int(r["index"]) for r in rows) == sorted(ds.test_index.tolist())
    assert all((float(r["score"]) > 30) == (r["anomalous"] == "1") for r in rows)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "nlll"], "unknown score 'nlll'"),
        (["--contamination", "0.7"], "(0, 0.5]"),
        (["--contamination", "0"], "(0, 0.5]"),
        (["--option", "kk=1"], "takes no option 'kk'"),
    ],
)
def test_bad_input_ends_in_one_line(extra: list[str], message: str, digits_run: Path,
                                    tmp_path: Path, capsys) -> None:
    code = main(["score", str(digits_run), "-o", str(tmp_path / "s.csv"), "--split", "test",
                 "--k", "2", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_data_of_another_shape(digits_run: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "small.npy"
    np.save(path, np.random.default_rng(0).random((12, 1, 4, 4)).astype(np.float32))
    code = main(["score", str(digits_run), "--data", str(path), "-o", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit this model" in err and err.count("\n") == 1, err


def test_nan_rows_in_an_image_file(digits_run: Path, tmp_path: Path, capsys) -> None:
    images = varfam.load_dataset("digits").test[:20].numpy().copy()
    images[3] = np.nan
    path = tmp_path / "images.npy"
    np.save(path, images)
    code = main(["score", str(digits_run), "--data", str(path), "-o", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "NaN" in err and err.count("\n") == 1, err
