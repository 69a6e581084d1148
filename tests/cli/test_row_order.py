"""Every per-row output comes back in the input's row order (issue 26, "silent misalignment").

Each command that writes one result per row (classify, encode, score, impute, sample
with labels) is compared row by row with the Python call on the same rows in the
file's order, and carries each row's position in the file where the format allows.
Data other than the run's own is used whole by default (issue 26, item 7).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

import varfam
from varfam.cli import main
from varfam.data.base import SPLIT_SEED, held_out_count, split_indices

SMALL = ["--hidden", "32", "--latent-dim", "4", "--quiet", "--seed", "0"]


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """digits in the file order of its source: 1000 rows the run trains on (own.npz) and
    400 others (new.npz), labels beside them."""
    folder = tmp_path_factory.mktemp("row-order")
    ds = varfam.load_dataset("digits")
    n = ds.train.shape[0] + ds.test.shape[0]
    x = np.empty((n, 8, 8), np.float32)
    y = np.empty(n, np.int64)
    for part in ("train", "test"):
        index = getattr(ds, f"{part}_index").numpy()
        x[index] = getattr(ds, part)[:, 0].numpy()
        y[index] = getattr(ds, f"{part}_labels").numpy()
    np.savez(folder / "own.npz", x=x[:1000], labels=y[:1000])
    np.savez(folder / "new.npz", x=x[1000:1400], labels=y[1000:1400])
    return {"own": folder / "own.npz", "new": folder / "new.npz", "dir": folder}


@pytest.fixture(scope="module")
def m2_run(files: dict[str, Path]) -> Path:
    """A semi-supervised run (a classifier q(y|x)) trained on own.npz."""
    out = files["dir"] / "m2"
    assert main(["train", "--data", str(files["own"]), "--labelled", "30", "--epochs", "1",
                 "--out", str(out), *SMALL]) == 0
    return out


def _rows(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(path) as f:
        return torch.from_numpy(f["x"]).unsqueeze(1), torch.from_numpy(f["labels"])


def _model(run: Path) -> varfam.VAE:
    return varfam.load(run).eval()


def _own_test_rows() -> torch.Tensor:
    """The positions in own.npz (1000 rows) of its seeded test split, in the file's order."""
    return split_indices(1000, held_out_count(1000), SPLIT_SEED)[1].sort().values


# ---------------------------------------------------------------- classify
def test_classify_other_data_every_row_in_file_order(m2_run: Path, files: dict[str, Path],
                                                     tmp_path: Path) -> None:
    x, _ = _rows(files["new"])
    model = _model(m2_run)
    with torch.no_grad():
        probs = model.classify(x).probs
    expected = probs.argmax(-1)
    # on today's main: 40 rows (a test split), in the split's permutation, index 0, 1, ...
    assert main(["classify", str(m2_run), "--data", str(files["new"]),
                 "-o", str(tmp_path / "p.csv")]) == 0
    rows = _read(tmp_path / "p.csv")
    assert [int(r["index"]) for r in rows] == list(range(400))
    assert [int(r["label"]) for r in rows] == expected.tolist()
    assert [r["class"] for r in rows] == [model.condition.names[int(c)] for c in expected]
    got = torch.tensor([float(r["probability"]) for r in rows], dtype=torch.float64)
    assert torch.allclose(got, probs.max(-1).values.double(), atol=1e-6)
    assert main(["classify", str(m2_run), "--data", str(files["new"]),
                 "-o", str(tmp_path / "p.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "p.npy"), expected.numpy())
    assert main(["classify", str(m2_run), "--data", str(files["new"]),
                 "-o", str(tmp_path / "p.npz")]) == 0
    with np.load(tmp_path / "p.npz") as f:
        assert np.array_equal(f["labels"], expected.numpy())
        assert np.array_equal(f["index"], np.arange(400))
        assert np.allclose(f["probs"], probs.numpy(), atol=1e-6)


def test_classify_own_data_keeps_its_split_in_file_order(m2_run: Path, files: dict[str, Path],
                                                         tmp_path: Path) -> None:
    x, y = _rows(files["own"])
    model = _model(m2_run)
    test = _own_test_rows()
    assert main(["classify", str(m2_run), "-o", str(tmp_path / "p.csv")]) == 0  # --split test
    rows = _read(tmp_path / "p.csv")
    assert [int(r["index"]) for r in rows] == test.tolist()
    with torch.no_grad():
        expected = model.classify(x[test]).probs.argmax(-1)
    assert [int(r["label"]) for r in rows] == expected.tolist()
    assert main(["classify", str(m2_run), "--split", "all", "-o", str(tmp_path / "a.npz")]) == 0
    with np.load(tmp_path / "a.npz") as f:
        assert np.array_equal(f["index"], np.arange(1000))
        assert np.array_equal(f["true"], y.numpy())  # the file's own labels, row for row
        with torch.no_grad():
            assert np.array_equal(f["labels"], model.classify(x).probs.argmax(-1).numpy())


# ---------------------------------------------------------------- encode
def test_encode_npy_and_npz_follow_the_file(m2_run: Path, files: dict[str, Path],
                                            tmp_path: Path) -> None:
    model = _model(m2_run)
    for data, index in ((files["new"], torch.arange(400)), (None, torch.arange(1000))):
        x, y = _rows(data or files["own"])
        with torch.no_grad():
            q = model.encode(x[index], y[index])  # the run reads the data's labels
        where = [] if data is None else ["--data", str(data)]
        assert main(["encode", str(m2_run), *where, "-o", str(tmp_path / "z.npy")]) == 0
        z = np.load(tmp_path / "z.npy")
        assert np.allclose(z[:, 0], q.mean.numpy(), atol=1e-5)
        assert np.allclose(z[:, 1], q.stddev.numpy(), atol=1e-5)
        assert main(["encode", str(m2_run), *where, "-o", str(tmp_path / "z.npz")]) == 0
        with np.load(tmp_path / "z.npz") as f:
            assert np.array_equal(f["index"], index.numpy())
            assert np.array_equal(f["labels"], y[index].numpy())
            assert np.allclose(f["loc"], q.mean.numpy(), atol=1e-5)
    test = _own_test_rows()
    assert main(["encode", str(m2_run), "--split", "test", "-o", str(tmp_path / "t.npy")]) == 0
    x, y = _rows(files["own"])
    with torch.no_grad():
        loc = model.encode(x[test], y[test]).mean
    assert np.allclose(np.load(tmp_path / "t.npy")[:, 0], loc.numpy(), atol=1e-5)


# ---------------------------------------------------------------- score
def test_score_other_data_row_by_row(m2_run: Path, files: dict[str, Path],
                                     tmp_path: Path) -> None:
    x, y = _rows(files["new"])
    assert main(["score", str(m2_run), "--data", str(files["new"]), "--method", "elbo",
                 "--k", "3", "-o", str(tmp_path / "s.csv")]) == 0
    rows = _read(tmp_path / "s.csv")
    expected = varfam.score(_model(m2_run), x, "elbo", y=y, k=3, seed=0)
    assert [int(r["index"]) for r in rows] == list(range(400))
    assert [int(r["label"]) for r in rows] == y.tolist()
    assert np.array_equal([float(r["score"]) for r in rows], expected.numpy())


# ---------------------------------------------------------------- other data is used whole
def test_eval_and_reconstruct_use_every_row_of_other_data(m2_run: Path, files: dict[str, Path],
                                                          tmp_path: Path, capsys) -> None:
    import json

    capsys.readouterr()
    assert main(["eval", str(m2_run), "--data", str(files["new"]), "--iw", "2", "--json",
                 "--no-record"]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["n"] == 400  # every row, not the 40 of a seeded test split
    x, _ = _rows(files["new"])
    assert main(["reconstruct", str(m2_run), "--data", str(files["new"]), "-n", "3",
                 "--draws", "1", "-o", str(tmp_path / "r.npy")]) == 0
    inputs = np.load(tmp_path / "r.npy")[::2]  # rows of [input, reconstruction]
    assert np.array_equal(inputs, x[:3].numpy())  # its first rows
    assert main(["eval", str(m2_run), "--iw", "2", "--json", "--no-record"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 100


# ---------------------------------------------------------------- tables: impute, sample
@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a run conditioned on the species of iris, the CSV with holes and some labels
    missing, its rows shuffled so that the file's order is no order the run knows)."""
    from sklearn.datasets import load_iris

    folder = tmp_path_factory.mktemp("row-order-table")
    d = load_iris(as_frame=True)
    frame = d.frame.drop(columns="target")
    rng = np.random.default_rng(0)
    for name in frame.columns:
        frame[name] = frame[name].mask(rng.random(len(frame)) < 0.2)
    frame["species"] = [str(d.target_names[t]) for t in d.target]
    frame.sample(frac=1.0, random_state=0).to_csv(folder / "train.csv", index=False)
    out = folder / "run"
    assert main(["train", "--data", str(folder / "train.csv"), "--label-column", "species",
                 "--condition", "label", "--epochs", "1", "--no-report", "--out", str(out),
                 *SMALL]) == 0
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    frame.loc[::4, "species"] = np.nan
    frame.to_csv(folder / "new.csv", index=False)
    return out, folder / "new.csv"


def test_impute_rows_follow_the_file(table_run: tuple[Path, Path], tmp_path: Path) -> None:
    import pandas as pd

    from varfam.tables.imputation import impute

    run, data = table_run
    assert main(["impute", str(run), "--data", str(data), "--k", "30",
                 "-o", str(tmp_path / "f.csv")]) == 0
    original, filled = pd.read_csv(data), pd.read_csv(tmp_path / "f.csv")
    expected = impute(_model(run), data, label_column="species", k=30, seed=0)
    expected.to_csv(tmp_path / "python.csv", index=False)
    assert filled.equals(pd.read_csv(tmp_path / "python.csv"))  # row by row, cell by cell
    assert len(filled) == len(original) and filled.notna().all().all()
    assert filled[original.notna()].equals(original[original.notna()])  # each row its own


def test_sample_with_labels_writes_each_rows_class(table_run: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    import pandas as pd

    from varfam.tables.imputation import sample_table

    run, _ = table_run
    assert main(["sample", str(run), "--label", "all", "-n", "3", "--seed", "2",
                 "-o", str(tmp_path / "s.csv")]) == 0
    y = torch.arange(3).repeat_interleave(3)
    sample_table(_model(run), 9, y, seed=2, label_column="species").to_csv(
        tmp_path / "python.csv", index=False)
    rows = pd.read_csv(tmp_path / "s.csv")
    assert rows.equals(pd.read_csv(tmp_path / "python.csv"))
    assert rows["species"].tolist() == [c for c in ("setosa", "versicolor", "virginica")
                                        for _ in range(3)]
