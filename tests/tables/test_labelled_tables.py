"""Tables with a label column after training (issue 26, item 1): a run conditioned on the
label (or semi-supervised, M2) gets its pictures and report, samples rows per class, and
imputes each row given its own label, summing the label out where it is missing; a
failure after training leaves the run whole and says so in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logsumexp

import varfam
from varfam.cli import main
from varfam.errors import VarfamError
from varfam.tables.imputation import as_table, conditional_predictions, impute, sample_table

SMALL = ["--epochs", "2", "--hidden", "32", "--latent-dim", "3", "--quiet", "--seed", "0"]
CLASSES = ["setosa", "versicolor", "virginica"]
PICTURES = ("marginals.png", "correlations.png", "latent.png")


def run(*argv: object) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's iris as a CSV: 4 measurements with a fifth of the cells missing, and
    the species as text."""
    from sklearn.datasets import load_iris

    d = load_iris(as_frame=True)
    frame = d.frame.drop(columns="target")
    rng = np.random.default_rng(0)
    for name in frame.columns:
        frame[name] = frame[name].mask(rng.random(len(frame)) < 0.2)
    frame["species"] = [CLASSES[t] for t in d.target]
    path = tmp_path_factory.mktemp("iris") / "iris.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def conditioned(iris: Path) -> Path:
    """A run conditioned on the species (--condition label); on today's main training
    ended in "pass y" with exit code 2, without pictures or report."""
    out = iris.parent / "conditioned"
    assert run("train", "--data", iris, "--label-column", "species", "--condition", "label",
               "--out", out, *SMALL) == 0
    return out


@pytest.fixture(scope="module")
def m2(iris: Path) -> Path:
    """A semi-supervised run: 12 labels kept, a classifier q(y|x)."""
    out = iris.parent / "m2"
    assert run("train", "--data", iris, "--label-column", "species", "--labelled", 12,
               "--out", out, *SMALL) == 0
    return out


def _with_hidden_labels(iris: Path) -> pd.DataFrame:
    frame = pd.read_csv(iris)
    frame.loc[::3, "species"] = np.nan  # every third row's label is missing
    return frame


@pytest.mark.parametrize("which", [pytest.param("conditioned", marks=pytest.mark.slow), "m2"])
def test_a_labelled_table_run_is_whole_and_usable(which: str, request: pytest.FixtureRequest,
                                                  iris: Path, tmp_path: Path) -> None:
    out = request.getfixturevalue(which)
    for name in (*PICTURES, "report.html", "config.json", "model.safetensors"):
        assert (out / name).is_file(), name
    # rows per class, the class in the run's label column
    assert run("sample", out, "-n", 5, "-o", tmp_path / "s.csv") == 0
    s = pd.read_csv(tmp_path / "s.csv")
    assert s.shape == (5, 5) and list(s.columns)[-1] == "species"
    assert set(s["species"]) <= set(CLASSES)
    assert run("sample", out, "--label", "setosa", "-n", 3, "-o", tmp_path / "one.csv") == 0
    assert pd.read_csv(tmp_path / "one.csv")["species"].tolist() == ["setosa"] * 3
    assert run("sample", out, "--label", "all", "-n", 2, "-o", tmp_path / "all.csv") == 0
    assert pd.read_csv(tmp_path / "all.csv")["species"].tolist() == [c for c in CLASSES
                                                                     for _ in range(2)]
    # impute: every measurement filled, observed cells and labels as read
    assert run("impute", out, "-o", tmp_path / "f.csv", "--k", 20) == 0
    original, filled = pd.read_csv(iris), pd.read_csv(tmp_path / "f.csv")
    assert filled.notna().all().all()
    assert filled[original.notna()].equals(original[original.notna()])
    assert run("report", out, "--iw", 3, "--no-record") == 0


def test_python_sample_table_takes_labels(conditioned: Path, tmp_path: Path) -> None:
    model = varfam.load(conditioned)
    rows = sample_table(model, 4, "virginica", label_column="species")
    assert rows["species"].tolist() == ["virginica"] * 4 and rows.shape == (4, 5)
    drawn = sample_table(model, 30)  # classes drawn from p(y), named in a column "label"
    assert set(drawn["label"]) <= set(CLASSES) and len(set(drawn["label"])) > 1
    assert sample_table(model, 3, [0, 2, 1])["label"].tolist() == ["setosa", "virginica",
                                                                    "versicolor"]
    with pytest.raises(VarfamError, match="unknown label 'rose'"):
        sample_table(model, 2, "rose")
    plain = tmp_path / "plain"
    assert run("train", "--data", str(conditioned.parent / "iris.csv"), "--out", plain,
               "--no-report", *SMALL) == 0
    with pytest.raises(VarfamError, match="not conditioned on labels"):
        sample_table(varfam.load(plain), 2, "setosa")


@pytest.mark.parametrize("which", ["conditioned", "m2"])
def test_impute_reads_each_rows_label_and_sums_missing_ones_out(
        which: str, request: pytest.FixtureRequest, iris: Path) -> None:
    model = varfam.load(request.getfixturevalue(which))
    frame = _with_hidden_labels(iris)
    table = as_table(model, frame, "species")
    truth = pd.read_csv(iris)["species"]
    given = frame["species"].notna().to_numpy()
    assert table.labels.tolist() == [CLASSES.index(v) if g else -1
                                     for v, g in zip(truth, given)]
    filled = impute(model, frame, label_column="species", k=50)
    assert filled.notna().all().all()  # the missing labels too: p(y|x_o)'s most probable
    assert filled["species"][given].equals(frame["species"][given])
    assert set(filled["species"]) <= set(CLASSES)
    draws = impute(model, frame, label_column="species", k=20, draws=2)
    assert all(d.notna().all().all() for d in draws)
    # a hidden label is summed out exactly: log p(x_o) = log mean_c p(x_o | c), and each
    # estimate mixes the classes' with p(c | x_o); the same draws class by class
    x = table.x[~torch.from_numpy(given.copy())][:5]
    hidden = conditional_predictions(model, x, y=torch.full((5,), -1), k=50, seed=0)
    torch.manual_seed(0)
    each = [conditional_predictions(model, x, y=torch.full((5,), c), k=50, seed=None)
            for c in range(3)]
    ll = np.stack([e.log_likelihood for e in each])
    assert np.allclose(hidden.log_likelihood, logsumexp(ll, 0) - np.log(3), rtol=0, atol=1e-9)
    post = np.exp(ll - logsumexp(ll, 0))
    assert np.allclose(hidden.label_probs, post.T, atol=1e-9)
    col = model.likelihood.columns[0]  # positive: the mixture of the means of the log
    log_mean = [(np.log(e.values[col.name] + col.offset) - col.loc) / col.scale for e in each]
    mixed = np.exp((post * np.stack(log_mean)).sum(0) * col.scale + col.loc) - col.offset
    assert np.allclose(hidden.values[col.name], mixed, rtol=1e-6)
    # a table without its label column: every label summed out, the rows still filled
    alone = impute(model, frame.drop(columns="species"), k=20)
    assert alone.notna().all().all() and list(alone.columns) == list(frame.columns[:4])
    with pytest.raises(VarfamError, match="not a class of this run"):
        impute(model, frame.assign(species="rose"), label_column="species", k=2)


def test_a_failure_after_training_leaves_the_run_whole(iris: Path, tmp_path: Path, capsys,
                                                       monkeypatch) -> None:
    import varfam.reporting.callbacks as callbacks

    def broken(*args, **kwargs):
        raise VarfamError("the pictures broke")

    monkeypatch.setattr(callbacks, "write_table_pictures", broken)
    out = tmp_path / "run"
    capsys.readouterr()
    assert run("train", "--data", iris, "--label-column", "species", "--condition", "label",
               "--out", out, *SMALL) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "the pictures broke" in err[0], err
    assert f"varfam report {out}" in err[0]
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "report.html"):
        assert (out / name).is_file(), name  # the report is still written
    assert not (out / "marginals.png").exists()
    assert run("report", out, "--iw", 3) == 0
