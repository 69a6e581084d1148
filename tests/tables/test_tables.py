"""Tables with missing cells: reading, column types, model units, and the commands
(train, impute, sample, eval) end to end on a small CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from varfam.cli import main
from varfam.data import TableDataset, load_dataset, load_table
from varfam.data.columns import Column
from varfam.data.tables import from_model_units, read_column_types
from varfam.errors import VarfamError
from varfam.tables.imputation import imputation_errors


def run(*argv: object) -> int:
    return main([str(a) for a in argv])


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A table whose columns share one latent factor; every inferred type appears."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    return pd.DataFrame({
        "height": 170 + 10 * z + 2 * rng.normal(size=n),
        "income": np.exp(10 + 0.5 * z + 0.1 * rng.normal(size=n)),
        "visits": rng.poisson(np.exp(2.5 + 0.5 * z)),
        "colour": np.where(z > 0.5, "red", np.where(z < -0.5, "blue", "green")),
        "delta": z + 0.1 * rng.normal(size=n),
        "smoker": z + rng.normal(size=n) > 0,
        "label": np.where(z > 0, "hi", "lo"),
    })


def holes(df: pd.DataFrame, share: float = 0.2, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = df.copy()
    for name in df.columns:
        if name != "label":
            out[name] = out[name].mask(rng.random(len(df)) < share)
    return out


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(run folder, the CSV with holes, the complete CSV): 3 epochs on 200 rows."""
    root = tmp_path_factory.mktemp("tables")
    complete = frame()
    complete.to_csv(root / "truth.csv", index=False)
    holes(complete).to_csv(root / "holes.csv", index=False)
    out = root / "run"
    assert run("train", "--data", root / "holes.csv", "--label-column", "label", "--epochs", 3,
               "--hidden", 32, "--latent-dim", 3, "--out", out, "--quiet", "--no-report") == 0
    return out, root / "holes.csv", root / "truth.csv"


# ------------------------------------------------------------------ reading and types
def test_inferred_types_and_model_units() -> None:
    t = load_table(holes(frame()), label_column="label")
    kinds = {c.name: c.type for c in t.columns}
    assert kinds == {"height": "positive", "income": "positive", "visits": "count-nb",
                     "colour": "categorical", "delta": "real", "smoker": "categorical"}
    assert t.x.shape == (200, 6) and t.x.dtype == torch.float32
    assert t.labels is not None and t.classes == ("hi", "lo")
    x = t.x.numpy()
    delta = x[:, [c.name for c in t.columns].index("delta")]
    tr, _ = t.split()
    train = delta[tr.numpy()]
    train = train[~np.isnan(train)]  # standardized with the observed training cells
    assert abs(train.mean()) < 1e-5 and abs(train.std() - 1) < 1e-5
    assert np.array_equal(np.isnan(x), t.frame.drop(columns="label").isna().to_numpy())


def test_model_units_round_trip_through_the_saved_columns() -> None:
    df = frame()
    t = load_table(df, label_column="label",
                   column_types={"visits": "count", "colour": {"type": "ordinal",
                                                               "levels": ["blue", "green", "red"]}})
    saved = json.loads(json.dumps([c.to_dict() for c in t.columns]))  # as in config.json
    columns = [Column.from_dict(c) for c in saved]
    back = from_model_units(t.x, columns)
    for c in columns:
        if c.type in ("real", "positive"):
            np.testing.assert_allclose(back[c.name], df[c.name], rtol=1e-5)
        else:
            assert back[c.name].tolist() == df[c.name].tolist(), c.name
    assert str(back["visits"].dtype) == "int64" and back["smoker"].dtype == bool
    again = load_table(df, label_column="label", columns=saved)
    assert torch.equal(again.x, t.x)


def test_column_types_files(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text('visits = "nb"\n[colour]\ntype = "cat"\n')
    assert read_column_types(tmp_path / "t.toml") == {
        "visits": {"type": "count-nb"}, "colour": {"type": "categorical"}}
    (tmp_path / "t.csv").write_text("name,type,levels\ncolour,ordinal,blue|green|red\n")
    assert read_column_types(tmp_path / "t.csv") == {
        "colour": {"type": "ordinal", "levels": ["blue", "green", "red"]}}
    (tmp_path / "hivae.csv").write_text("type,dim,nclass\rreal,1,\rcat,2,2\r")  # CR endings
    assert read_column_types(tmp_path / "hivae.csv") == [{"type": "real"},
                                                         {"type": "categorical"}]


def test_table_files_and_named_tables(tmp_path: Path) -> None:
    df = holes(frame(50)).drop(columns="label")
    df.to_parquet(tmp_path / "t.parquet")
    ds = load_dataset(str(tmp_path / "t.parquet"))
    assert isinstance(ds, TableDataset) and ds.data_shape == (6,)
    arr = np.random.default_rng(0).normal(size=(30, 4))
    arr[0, 1] = np.nan
    np.save(tmp_path / "a.npy", arr)
    ds = load_dataset(str(tmp_path / "a.npy"))
    assert isinstance(ds, TableDataset) and [c.name for c in ds.columns] == ["x1", "x2", "x3",
                                                                            "x4"]
    (tmp_path / "noheader.csv").write_text("1,2.5,a\n2,,b\n3,4.5,a\n")
    t = load_table(tmp_path / "noheader.csv")
    assert [c.name for c in t.columns] == ["x1", "x2", "x3"] and t.x.shape == (3, 3)
    for name, shape in (("breast-cancer", (30,)), ("wine", (13,)), ("diabetes", (11,))):
        ds = load_dataset(name)
        assert isinstance(ds, TableDataset) and ds.data_shape == shape, name


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(("df", "options", "fragment"), [
    (pd.DataFrame({"a": [1.0, 2.0], "b": [np.nan, np.nan]}), {}, "no observed cell"),
    (pd.DataFrame({"a": [1.0, 2.0, 3.0]}), {"column_types": {"zz": "real"}},
     "unknown column"),
    (pd.DataFrame({"a": ["1.5", "x", "2"]}), {"column_types": {"a": "real"}},
     "non-numeric value 'x'"),
    (pd.DataFrame({"a": [1.0, -2.0, 3.0]}), {"column_types": {"a": "positive"}}, "negative"),
    (pd.DataFrame({"a": [1.0, 2.0, 3.0]}), {"label_column": "y"}, "not a column"),
])
def test_bad_tables_are_one_line_errors(df: pd.DataFrame, options: dict, fragment: str) -> None:
    with pytest.raises(VarfamError, match=fragment):
        load_table(df, **options)


def test_cli_errors_exit_2(tmp_path: Path, table_run: tuple[Path, Path, Path],
                           capsys: pytest.CaptureFixture) -> None:
    out, data, _ = table_run
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [None, None, None]}).to_csv(tmp_path / "e.csv",
                                                                         index=False)
    assert run("train", "--data", tmp_path / "e.csv", "--epochs", 1, "--out", tmp_path / "r",
               "--quiet") == 2
    (tmp_path / "types.toml").write_text('nope = "real"\n')
    assert run("train", "--data", data, "--column-types", tmp_path / "types.toml",
               "--epochs", 1, "--out", tmp_path / "r2", "--quiet") == 2
    new = pd.read_csv(data)
    new.loc[0, "colour"] = "purple"
    new.to_csv(tmp_path / "new.csv", index=False)
    assert run("impute", out, "--data", tmp_path / "new.csv", "-o", tmp_path / "f.csv") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "no observed cell" in err[0] and "unknown column" in err[1]
    assert "'purple'" in err[2] and "never saw" in err[2]
    assert all(line.startswith("varfam: error:") for line in err)


# ------------------------------------------------------------------ commands
def test_impute_keeps_observed_cells_and_the_layout(table_run: tuple[Path, Path, Path],
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    out, data, truth = table_run
    assert run("impute", out, "--data", data, "-o", tmp_path / "f.csv", "--k", 50,
               "--truth", truth, "--json") == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    original = pd.read_csv(data)
    filled = pd.read_csv(tmp_path / "f.csv")
    assert list(filled.columns) == list(original.columns)
    from varfam import load as load_model
    from varfam.tables.imputation import impute

    in_memory = impute(load_model(out), data, k=5)  # the frame before writing: same dtypes
    assert (in_memory.dtypes == original.dtypes).all()
    assert filled.drop(columns="label").notna().all().all()
    observed = original.notna()
    assert filled[observed].equals(original[observed])  # bit for bit, as read
    raw_in = (data.read_text().splitlines()[1].split(","))
    raw_out = (tmp_path / "f.csv").read_text().splitlines()[1].split(",")
    assert all(a == b for a, b in zip(raw_in, raw_out) if a)  # the text of observed cells too
    assert set(report["columns"]) == {"height", "income", "visits", "colour", "delta", "smoker"}
    assert 0 < report["nerror"] < 1 and np.isfinite(report["log_likelihood"])
    assert run("impute", out, "--data", data, "-o", tmp_path / "m.csv", "--k", 20,
               "--draws", 2) == 0
    a, b = pd.read_csv(tmp_path / "m_1.csv"), pd.read_csv(tmp_path / "m_2.csv")
    assert a[observed].equals(original[observed]) and not a.equals(b)


def test_sample_eval_and_the_saved_run(table_run: tuple[Path, Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    out, data, _ = table_run
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["likelihood"] == "mixed" and cfg["model"]["arch"] == "tabular"
    assert cfg["data"]["label_column"] == "label"
    assert [c["type"] for c in cfg["model"]["likelihood_options"]["columns"]][3] == "categorical"
    assert run("sample", out, "-n", 7, "-o", tmp_path / "s.csv") == 0
    s = pd.read_csv(tmp_path / "s.csv")
    assert s.shape == (7, 6) and set(s["colour"]) <= {"red", "green", "blue"}
    assert (s["income"] > 0).all() and (s["visits"] == s["visits"].round()).all()
    assert run("eval", out, "--iw", 20, "--json", "--no-record") == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.isfinite(m["log_likelihood"]) and m["log_likelihood"] >= m["elbo"] - 1
    for name in ("marginals.png", "correlations.png", "latent.png"):  # not image grids
        assert (out / name).is_file(), name
    assert not (out / "reconstructions.png").exists()
    assert run("report", out, "--iw", 5, "--no-record") == 0
    page = (out / "report.html").read_text()
    for key in ("marginals", "correlations", "latent-map"):  # a figure, or a headline picture
        assert f'id="{key}"' in page or f'data-picture="{key}"' in page, key


def test_imputation_beats_the_column_means() -> None:
    """Two strongly correlated columns: after a short training the model's imputations of
    hidden cells are closer to the truth than the observed means are."""
    from varfam import VAE, train
    from varfam.tables.imputation import impute

    rng = np.random.default_rng(0)
    z = rng.normal(size=600)
    df = pd.DataFrame({"a": z + 0.1 * rng.normal(size=600), "b": -z + 0.1 * rng.normal(size=600),
                       "c": 2 * z + 0.1 * rng.normal(size=600)})
    hidden = rng.random(df.shape) < 0.3
    t = load_table(df.mask(hidden))
    torch.manual_seed(0)
    model = VAE.build(**t.model_options(), hidden=(32,), latent_dim=1)
    train(model, t.dataset(), epochs=10, batch_size=32, lr=1e-2, objective="iwae",
          objective_options={"k": 5})
    filled = impute(model, t, k=100)
    mean = df.mask(hidden).fillna(df.mask(hidden).mean())
    model_err = imputation_errors(df, filled, hidden, t.columns)["nerror"]
    mean_err = imputation_errors(df, mean, hidden, t.columns)["nerror"]
    assert model_err < 0.5 * mean_err, (model_err, mean_err)
