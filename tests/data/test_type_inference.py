"""Column type inference (issue 26, item 9): the same kind of column gets the same type
with or without missing cells and whatever the number of rows; identifiers and dates
are left out of the model with a reason; ``varfam train`` prints every decision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from varfam.cli import main
from varfam.data import load_table
from varfam.data.tables import describe_columns, inferred_types
from varfam.errors import VarfamError


def counts(n: int = 300, seed: int = 0) -> np.ndarray:
    """Poisson counts of mean 4: about 12 distinct values in 300 rows, fewer in 40."""
    return np.random.default_rng(seed).poisson(4.0, n)


def with_holes(values: np.ndarray, share: float = 0.3, seed: int = 1) -> pd.Series:
    hidden = np.random.default_rng(seed).random(values.size) < share
    return pd.Series(np.where(hidden, np.nan, values.astype(float)))


def kind(series: pd.Series, name: str = "visits") -> str:
    frame = pd.DataFrame({name: series, "other": np.linspace(-1, 1, len(series))})
    return {c.name: c.type for c in load_table(frame).columns}[name]


# ------------------------------------------------------------------ consistency
def test_a_count_column_has_one_type_with_or_without_holes_and_rows() -> None:
    v = counts()
    assert len(np.unique(v)) > 10 and len(np.unique(v[:40])) <= 10  # the old rule's edge
    types = {
        "complete": kind(pd.Series(v)),
        "with holes": kind(with_holes(v)),
        "first 40 rows": kind(pd.Series(v[:40])),
        "first 40 rows, with holes": kind(with_holes(v[:40])),
        "as floats": kind(pd.Series(v.astype(float))),
    }
    assert set(types.values()) == {"count"}, types


def test_small_whole_numbers_are_counts_and_two_values_are_categorical() -> None:
    rng = np.random.default_rng(0)
    assert kind(pd.Series(rng.integers(0, 4, 200))) == "count"  # was categorical (4 values)
    assert kind(pd.Series(rng.integers(0, 2, 200))) == "categorical"
    assert kind(pd.Series(rng.integers(1, 3, 200))) == "categorical"  # 1/2 codes
    assert kind(with_holes(rng.integers(0, 2, 200))) == "categorical"
    assert kind(pd.Series(rng.integers(-3, 4, 200))) == "real"


# ------------------------------------------------------------------ identifiers and dates
def people(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "id": [f"P{i:04d}" for i in range(n)],
        "row": np.arange(1, n + 1),
        "user_id": rng.permutation(10 * n)[:n] + 1000,
        "visited": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "stamp": pd.date_range("2024-01-01", periods=n, freq="h"),
        "height": 170 + 10 * rng.normal(size=n),
        "visits": rng.poisson(3, n),
        "colour": rng.choice(["red", "green", "blue"], n),
    })


def test_identifiers_and_dates_are_left_out_with_a_reason() -> None:
    t = load_table(people())
    assert [c.name for c in t.columns] == ["height", "visits", "colour"]
    assert set(t.dropped) == {"id", "row", "user_id", "visited", "stamp"}
    assert "identifier" in t.dropped["id"] and "identifier" in t.dropped["row"]
    assert "identifier" in t.dropped["user_id"]
    assert t.dropped["visited"] == "dates" and t.dropped["stamp"] == "dates"
    assert t.notes == {"height": "numbers, all > 0", "visits": "whole numbers >= 0",
                       "colour": "text, 3 distinct values"}
    assert tuple(t.x.shape) == (60, 3)
    ds = t.dataset()  # the dataset carries the decisions to varfam train's summary
    assert ds.dropped == t.dropped and ds.notes == t.notes


def test_a_declared_type_models_a_column_that_would_be_left_out() -> None:
    t = load_table(people(), column_types={"id": "categorical", "row": "count"})
    assert {c.name: c.type for c in t.columns}["id"] == "categorical"
    assert {c.name: c.type for c in t.columns}["row"] == "count"
    assert "id" not in t.dropped and t.notes["id"] == "declared"


def test_small_or_repeating_text_is_still_categorical() -> None:
    few = pd.DataFrame({"name": list("abcdefgh"), "x": np.arange(8.0) + 0.5})
    assert inferred_types(few)["name"][0] == {"type": "categorical"}
    n = 60
    dates_and_text = pd.DataFrame({"when": ["2024-01-01"] * (n - 1) + ["soon"],
                                   "x": np.linspace(0.5, 2, n)})
    assert inferred_types(dates_and_text)["when"][0] == {"type": "categorical"}
    # numbers that all differ are not identifiers unless consecutive or named so
    spread = pd.DataFrame({"income": np.random.default_rng(0).permutation(10_000)[:n] * 3})
    assert inferred_types(spread)["income"][0] == {"type": "count-nb"}


def test_a_table_of_identifiers_only_is_refused_in_one_line() -> None:
    with pytest.raises(VarfamError) as e:
        load_table(people()[["id", "visited"]])
    msg = str(e.value)
    assert "\n" not in msg and "'id'" in msg and "'visited'" in msg and "--column-types" in msg


def test_the_column_summary_says_why() -> None:
    t = load_table(people())
    text = describe_columns(t.columns, t.x, t.notes, t.dropped)
    assert "[whole numbers >= 0]" in text and "[text, 3 distinct values]" in text
    assert "id" in text and "left out" in text and "dates (not modelled)" in text
    assert "--column-types" in text
    plain = describe_columns(t.columns, t.x)  # a saved model's columns: no reasons
    assert "[" not in plain and "--column-types" not in plain


# ------------------------------------------------------------------ the command line
def test_varfam_train_prints_every_decision_and_impute_keeps_the_ids(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = people(120)
    frame.loc[frame.index % 7 == 0, "height"] = np.nan
    frame.to_csv(tmp_path / "people.csv", index=False)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "people.csv"), "--epochs", "1",
                 "--hidden", "8", "--latent-dim", "2", "--out", str(out), "--no-report"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "3 columns (5 left out)" in text
    for name in ("height", "visits", "colour", "id", "row", "user_id", "visited", "stamp"):
        assert f"  {name} " in text, name
    assert "an identifier: text whose 120 values all differ (not modelled)" in text
    assert "--column-types" in text
    assert main(["impute", str(out), "--data", str(tmp_path / "people.csv"), "--k", "5",
                 "-o", str(tmp_path / "filled.csv")]) == 0
    filled = pd.read_csv(tmp_path / "filled.csv")
    assert filled["id"].tolist() == frame["id"].tolist()
    assert filled["visited"].tolist() == frame["visited"].tolist()
    assert not filled["height"].isna().any()
