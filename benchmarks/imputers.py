"""VAEImputer in scikit-learn's own imputation example, beside scikit-learn's imputers.

scikit-learn's ``plot_missing_values`` example ("Imputing missing values before building
an estimator"), as published: the first 400 rows of a regression table, one cell hidden in
75 % of the rows (``RandomState(42)``), each imputer followed by
``RandomForestRegressor(random_state=0)`` in a pipeline, scored by 4-fold
cross-validated mean squared error (lower is better), every imputer with
``add_indicator=True``:

- ``full data``: the regressor on the complete rows (a reference, not an imputer);
- ``zero``: ``SimpleImputer(strategy="constant", fill_value=0)``;
- ``mean``: ``SimpleImputer(strategy="mean")``;
- ``KNN``: ``KNNImputer()``;
- ``iterative``: ``IterativeImputer(n_nearest_features=3, max_iter=1,
  sample_posterior=True, random_state=0)`` (the example's settings);
- ``iterative (default)``: ``IterativeImputer(random_state=0)``, scikit-learn's defaults;
- ``VAEImputer``: MIWAE (``varfam.integrations.sklearn.VAEImputer``, ``--epochs``).

Tables: ``diabetes`` (``load_diabetes``, 10 features; its mask is the example's exactly:
the example masks California housing first, so the generator is advanced by a
400 × 8 mask before diabetes'), and ``california`` (``fetch_california_housing``, 8
features), which needs a download: where it cannot be fetched (no network, no
``~/scikit_learn_data`` copy), ``wine-quality`` stands in: HI-VAE's copy of the UCI
wine-quality table (``../shared/data/hivae/Wine/data.csv``, its first 400 rows, the 11
physico-chemical columns, the quality score as the target), with its own
``RandomState(42)`` mask. ``--seeds`` adds masks drawn with other seeds (the example
has one).

Beside the example's score, each imputer's own error: fitted on all 400 incomplete rows,
the root mean squared error of its imputations of the hidden cells, each cell divided by
its column's standard deviation (``imputation NRMSE``; the regressor does not enter).

Results are appended to ``--out`` (JSON lines) and rendered into ``docs/tables.md``
between ``<!-- imputers:begin -->`` and ``<!-- imputers:end -->``.

    python benchmarks/imputers.py                       # the example's one mask (~3 min)
    python benchmarks/imputers.py --seeds 42,0,1,2,3    # five masks per table
    python benchmarks/imputers.py --render              # only rewrite the table
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _doc_block import write_block
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from varfam.integrations.sklearn import VAEImputer

ROOT = Path(__file__).resolve().parents[1]
WINE = ROOT.parent / "shared" / "data" / "hivae" / "Wine" / "data.csv"
ROWS, SPLITS = 400, 4
METHODS = ("full data", "zero", "mean", "KNN", "iterative", "iterative (default)", "VAEImputer")


def california() -> tuple[np.ndarray, np.ndarray, str] | None:
    from sklearn.datasets import fetch_california_housing

    try:
        X, y = fetch_california_housing(return_X_y=True)
    except OSError:  # no network and no cached copy
        return None
    return X[:ROWS], y[:ROWS], "california"


def wine_quality() -> tuple[np.ndarray, np.ndarray, str]:
    table = np.loadtxt(WINE, delimiter=",")
    return table[:ROWS, :11], table[:ROWS, 11], "wine-quality"


def add_missing_values(X: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """The example's mask: one random cell hidden in 75 % of the rows."""
    n, d = X.shape
    rows = np.zeros(n, dtype=bool)
    rows[: int(n * 0.75)] = True
    rng.shuffle(rows)
    cols = rng.randint(0, d, int(n * 0.75))
    X = X.copy()
    X[rows, cols] = np.nan
    return X


def imputers(epochs: int) -> dict[str, Any]:
    return {
        "zero": SimpleImputer(strategy="constant", fill_value=0, add_indicator=True),
        "mean": SimpleImputer(strategy="mean", add_indicator=True),
        "KNN": KNNImputer(add_indicator=True),
        "iterative": IterativeImputer(add_indicator=True, random_state=0,
                                      n_nearest_features=3, max_iter=1, sample_posterior=True),
        "iterative (default)": IterativeImputer(add_indicator=True, random_state=0),
        "VAEImputer": VAEImputer(add_indicator=True, epochs=epochs, random_state=0),
    }


def score(estimator: Any, X: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(mean, std) of the 4 folds' MSE, and the seconds it took."""
    t0 = time.perf_counter()
    s = -cross_val_score(estimator, X, y, scoring="neg_mean_squared_error", cv=SPLITS)
    return float(s.mean()), float(s.std()), time.perf_counter() - t0


def imputation_error(imputer: Any, X: np.ndarray, holes: np.ndarray) -> float:
    """RMSE of the imputed hidden cells in units of their columns' standard deviations."""
    filled = imputer.fit_transform(holes)[:, : X.shape[1]]  # without the indicator columns
    hidden = np.isnan(holes)
    z = (filled - X) / X.std(0)
    return float(np.sqrt(np.mean(z[hidden] ** 2)))


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    torch.set_num_threads(args.threads)
    X_d, y_d = load_diabetes(return_X_y=True)
    other = california() or wine_quality()
    tables = [("diabetes", X_d[:ROWS], y_d[:ROWS]), (other[2], other[0], other[1])]
    regressor = RandomForestRegressor(random_state=0)
    records = []
    for seed in args.seeds:
        for name, X, y in tables:
            rng = np.random.RandomState(seed)
            if name == "diabetes":  # the example masks California (400 x 8) first
                add_missing_values(np.zeros((ROWS, 8)), rng)
            holes = add_missing_values(X, rng)
            for method in METHODS:
                nrmse = None
                if method == "full data":
                    mse, std, secs = score(regressor, X, y)
                else:
                    pipe = make_pipeline(imputers(args.epochs)[method], regressor)
                    mse, std, secs = score(pipe, holes, y)
                    nrmse = imputation_error(imputers(args.epochs)[method], X, holes)
                rec = {"table": name, "seed": seed, "method": method, "mse": mse, "std": std,
                       "nrmse": nrmse, "seconds": secs, "epochs": args.epochs,
                       "threads": args.threads,
                       "machine": platform.node(), "date": time.strftime("%Y-%m-%d")}
                print(json.dumps(rec), flush=True)
                records.append(rec)
    with args.out.open("a") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
    return records


def render(path: Path, doc: Path) -> None:
    records = [json.loads(line) for line in path.open()] if path.exists() else []
    if not records:
        return
    tables = list(dict.fromkeys(r["table"] for r in records))
    last: dict[tuple[str, int, str], dict[str, Any]] = {}
    for r in records:  # the latest run of each (table, seed, method)
        last[(r["table"], r["seed"], r["method"])] = r
    lines = ["| imputer | " + " | ".join(f"{t}: CV MSE (4 folds) | {t}: imputation NRMSE"
                                         for t in tables) + " |",
             "|---|" + "---|---|" * len(tables)]

    def lowest(t: str, seed: int, key: str) -> float | None:
        values = [v[key] for (tt, s, m), v in last.items()
                  if tt == t and s == seed and m != "full data" and v.get(key) is not None]
        return min(values, default=None)

    def mean_of(t: str, method: str, key: str) -> float | None:
        values = [v[key] for (tt, _, m), v in last.items()
                  if tt == t and m == method and v.get(key) is not None]
        return float(np.mean(values)) if values else None

    for method in METHODS:
        cells = []
        for t in tables:
            runs = [v for (tt, _, m), v in last.items() if tt == t and m == method]
            if not runs:
                cells += ["–", "–"]
                continue
            for key in ("mse", "nrmse"):
                mine = [r for r in runs if r.get(key) is not None]
                if not mine:
                    cells.append("–")
                    continue
                values = np.array([r[key] for r in mine])
                digits = ".4g" if key == "mse" else ".3f"
                if len(mine) == 1 or method == "full data":  # the same for every mask
                    text = f"{values[0]:{digits}}" + (f" ± {mine[0]['std']:.3g}"
                                                      if key == "mse" else "")
                    best = values[0] == lowest(t, mine[0]["seed"], key)
                else:  # several masks: the mean, its spread, and how often it is lowest
                    wins = sum(r[key] == lowest(t, r["seed"], key) for r in mine)
                    text = (f"{values.mean():{digits}} (± {values.std():{digits}}, lowest on "
                            f"{wins} of {len(mine)})")
                    means = [x for x in (mean_of(t, m, key) for m in METHODS
                                         if m != "full data") if x is not None]
                    best = values.mean() == min(means)
                cells.append(f"**{text}**" if best and method != "full data" else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    seeds = sorted({r["seed"] for r in records})
    epochs = sorted({r["epochs"] for r in records})
    secs = {t: sum(r["seconds"] for r in last.values() if r["table"] == t
                   and r["method"] == "VAEImputer") for t in tables}
    body = "\n".join(lines) + (
        f"\n\nMasks: RandomState seeds {', '.join(map(str, seeds))}; VAEImputer with "
        f"epochs={', '.join(map(str, epochs))} (4 fits per table and mask; in all: "
        + ", ".join(f"{t} {s:.0f} s" for t, s in secs.items())
        + f"); measured {records[-1]['date']} on {records[-1]['machine']}, "
        f"{records[-1]['threads']} torch thread(s). With one mask, ± is the standard "
        "deviation over the 4 folds (the example's error bars); with several, the mean over "
        "the masks, ± its standard deviation over them, and on how many masks the imputer "
        "was the lowest. Bold: the lowest (mean) among the imputers. "
        "Imputation NRMSE: each imputer fitted on the 400 incomplete rows, RMSE of the "
        "hidden cells in units of their column's standard deviation.")
    write_block(doc, "<!-- imputers:begin -->", "<!-- imputers:end -->", body,
                heading="### VAEImputer in scikit-learn's imputation example")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[42])
    p.add_argument("--epochs", type=int, default=200,
                   help="VAEImputer's epochs (300 training rows: 5 batches per epoch)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "imputers_benchmark.jsonl")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "tables.md")
    p.add_argument("--render", action="store_true", help="only rewrite the table")
    args = p.parse_args()
    if not args.render:
        run(args)
    render(args.out, args.doc)


if __name__ == "__main__":
    main()
