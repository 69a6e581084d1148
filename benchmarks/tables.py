"""The tables benchmark: imputation and synthesis, varfam against scikit-learn's imputers.

Every row of a table is measured in one run, on the same masks, for every method:

- ``mean/mode``: ``SimpleImputer`` (mean for numbers, most frequent level otherwise);
- ``KNN (5)``: ``KNNImputer(n_neighbors=5)``;
- ``MICE (BayesianRidge)``: ``IterativeImputer(BayesianRidge())``;
- ``missForest-like (ExtraTrees)``: ``IterativeImputer(ExtraTreesRegressor(100, max_depth=8))``;
- ``miceforest``: LightGBM chained equations, where the package is installed;
- ``varfam``: the ``mixed`` likelihood with the ``tabular`` architecture, trained with the
  IWAE bound on the observed cells (MIWAE), imputing by self-normalized importance sampling.

The scikit-learn imputers see numbers standardized with the observed cells and
ordinal columns as their codes (rounded and clipped after imputation);
categorical columns one-hot for KNN and MICE (a missing level: every indicator
missing; the imputed level is the largest indicator) and as codes for the trees
(which split on them as missForest does on factors; rounded after imputation).

Parts (``--parts``):

1. ``miwae``: MIWAE's protocol. scikit-learn's breast cancer table (569 × 30),
   standardized, 50 % of the cells missing completely at random (one mask per seed),
   mean squared error on the missing cells.
2. ``hivae``: HI-VAE's protocol on Adult, Breast and Wine from
   ``../shared/data/hivae`` with its 20 % masks, scored with HI-VAE's error (error rate
   for categories, mean |Δ| / classes for ordinal columns, RMSE / range for numbers; mean
   over columns) on the hidden cells that the data set holds (cells missing in the data
   itself are missing in training too and not scored).
3. ``synthesis``: a gradient-boosting classifier trained on synthetic rows and tested on
   real held-out rows, against the same classifier trained on the real training rows.
4. ``defaults``: what a user gets without any flag: scikit-learn's diabetes (442 × 11,
   the disease progression included) and wine (178 × 13, the cultivar left out) tables,
   standardized, 40 % of the cells missing completely at random (one mask per seed),
   written to a CSV; ``varfam (defaults)`` is
   ``varfam.train_from_config(RunConfig(data=DataConfig(source=csv)))`` then
   ``varfam.impute(model, csv)`` (``varfam train --data holes.csv`` then ``varfam impute``:
   every training setting chosen from the data, :mod:`varfam.training.defaults`),
   against scikit-learn's imputers on the same numbers; mean squared error on the hidden
   cells.

Results are appended to a JSON-lines file (``--out``) and rendered into
``docs/results.md`` between ``<!-- tables:begin -->`` and ``<!-- tables:end -->``.

    python benchmarks/tables.py                                  # everything (~50 min CPU)
    python benchmarks/tables.py --parts hivae --datasets Breast --masks 1,2 --quick
    python benchmarks/tables.py --parts defaults --seeds 0,1,2     # the defaults row (~10 min)
    python benchmarks/tables.py --render                         # only rewrite the tables
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _doc_block import write_block

import varfam
from varfam import VAE, train
from varfam.config import DataConfig, RunConfig
from varfam.data import Dataset, load_table
from varfam.tables.imputation import conditional_predictions, sample_table

ROOT = Path(__file__).resolve().parents[1]
HIVAE = ROOT.parent / "shared" / "data" / "hivae"
BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"
METHODS = ["mean/mode", "KNN (5)", "MICE (BayesianRidge)", "missForest-like (ExtraTrees)",
           "miceforest", "varfam"]
HIVAE_TYPES = {"real": "real", "pos": "positive", "count": "count", "cat": "categorical",
               "ordinal": "ordinal"}

#: varfam's settings per data set: (epochs, batch size, IWAE k, importance draws to impute)
VARFAM = {
    "breast-cancer": dict(epochs=300, batch_size=64, k=50, draws=1000),
    "Breast": dict(epochs=150, batch_size=64, k=20, draws=1000),
    "Wine": dict(epochs=40, batch_size=64, k=20, draws=300),
    "Adult": dict(epochs=12, batch_size=128, k=20, draws=100),
}
NETWORK = dict(hidden=(128, 128), latent_dim=10)
#: Methods not run on a data set, and why.
SKIP = {("Adult", "KNN (5)"): "not run (over 20 min of CPU per mask on 32,561 rows here)"}
LIKELIHOOD = dict(min_scale=0.25)
OBJECTIVE = dict(estimator="dreg")
#: The defaults part: its tables, the share of cells hidden, and its methods.
DEFAULTS_TABLES = ("diabetes", "wine")
DEFAULTS_HIDDEN = 0.4
DEFAULTS_METHODS = ["mean/mode", "KNN (5)", "MICE (BayesianRidge)", "varfam (defaults)"]


# ---------------------------------------------------------------- the methods
def varfam_impute(df: pd.DataFrame, types: list[str], name: str, seed: int,
                  quick: bool) -> pd.DataFrame:
    """Train on every row's observed cells (imputation is transductive) and impute."""
    s = dict(VARFAM[name])
    if quick:
        s.update(epochs=max(1, s["epochs"] // 10), draws=50)
    t = load_table(df, column_types=[{"type": k} for k in types])
    opts = t.model_options()
    opts["likelihood_options"].update(LIKELIHOOD)
    torch.manual_seed(seed)
    model = VAE.build(**opts, **NETWORK)
    train(model, Dataset(name, t.x, t.x[:256]), epochs=s["epochs"], batch_size=s["batch_size"],
          lr=1e-3, objective="iwae", objective_options={"k": s["k"], **OBJECTIVE},
          eval_every=s["epochs"],
          seed=seed)
    res = conditional_predictions(model, t.x, k=s["draws"], seed=seed)
    out = df.copy()
    for col in t.columns:
        v = res.values[col.name]
        if col.levels is not None:
            v = np.asarray(col.levels, dtype=float)[v.astype(int)]
        out[col.name] = np.where(df[col.name].isna(), v, df[col.name])
    return out


def varfam_defaults(df: pd.DataFrame) -> pd.DataFrame:
    """``varfam train --data holes.csv`` and ``varfam impute``, from Python: no setting but
    the data (the defaults of :mod:`varfam.training.defaults`)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        csv = Path(folder) / "holes.csv"
        df.to_csv(csv, index=False)
        result = varfam.train_from_config(RunConfig(data=DataConfig(source=str(csv))))
        return varfam.impute(result.model, str(csv))


def _encode(df: pd.DataFrame, types: list[str], one_hot: bool = True
            ) -> tuple[np.ndarray, Callable]:
    """Numbers standardized, categories one-hot (NaN rows stay NaN; or as codes, rounded
    after imputation, for trees), ordinal as codes; returns the matrix and a function
    mapping an imputed matrix back to a frame."""
    blocks, spans = [], []
    for name, kind in zip(df.columns, types):
        v = df[name].to_numpy(dtype=float)
        if kind == "categorical" and one_hot:
            levels = np.unique(v[~np.isnan(v)])
            hot = (v[:, None] == levels[None]).astype(float)
            hot[np.isnan(v)] = np.nan
            blocks.append(hot)
            spans.append((name, "one-hot", levels))
        else:
            m, s = np.nanmean(v), np.nanstd(v) or 1.0
            blocks.append(((v - m) / s)[:, None])
            code = kind in ("categorical", "ordinal")
            info = (m, s, np.nanmin(v), np.nanmax(v))
            spans.append((name, "code" if code else "number", info))
    x = np.concatenate(blocks, 1)

    def decode(filled: np.ndarray) -> pd.DataFrame:
        out, i = df.copy(), 0
        for name, kind, info in spans:
            if kind == "one-hot":
                k = len(info)
                v = info[np.argmax(filled[:, i : i + k], 1)]
                i += k
            else:
                m, s, lo, hi = info
                v = filled[:, i] * s + m
                if kind == "code":
                    v = np.clip(np.round(v), lo, hi)
                i += 1
            out[name] = np.where(df[name].isna(), v, df[name])
        return out

    return x, decode


def sklearn_impute(method: str, df: pd.DataFrame, types: list[str], seed: int) -> pd.DataFrame:
    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
    from sklearn.linear_model import BayesianRidge

    if method == "mean/mode":
        out = df.copy()
        for name, kind in zip(df.columns, types):
            v = df[name]
            fill = v.mode().iloc[0] if kind in ("categorical", "ordinal") else v.mean()
            out[name] = v.fillna(fill)
        return out
    x, decode = _encode(df, types, one_hot=method != "missForest-like (ExtraTrees)")
    imputer = {
        "KNN (5)": lambda: KNNImputer(n_neighbors=5),
        "MICE (BayesianRidge)": lambda: IterativeImputer(BayesianRidge(), max_iter=10,
                                                         random_state=seed),
        "missForest-like (ExtraTrees)": lambda: IterativeImputer(
            ExtraTreesRegressor(n_estimators=100, max_depth=8, random_state=seed),
            max_iter=10, random_state=seed),
        "mean": lambda: SimpleImputer(),
    }[method]()
    return decode(imputer.fit_transform(x))


def miceforest_impute(df: pd.DataFrame, types: list[str], seed: int) -> pd.DataFrame:
    import miceforest as mf

    data = df.copy()
    data.columns = [f"c{i}" for i in range(df.shape[1])]
    for c, kind in zip(data.columns, types):
        if kind == "categorical":
            data[c] = data[c].astype("category")
    kernel = mf.ImputationKernel(data, random_state=seed)
    kernel.mice(5)
    done = kernel.complete_data(0)
    out = df.copy()
    for name, c in zip(df.columns, data.columns):
        out[name] = np.where(df[name].isna(), done[c].astype(float), df[name])
    return out


def impute(method: str, df: pd.DataFrame, types: list[str], name: str, seed: int,
           quick: bool) -> pd.DataFrame:
    if method == "varfam (defaults)":
        return varfam_defaults(df)
    if method == "varfam":
        return varfam_impute(df, types, name, seed, quick)
    if method == "miceforest":
        return miceforest_impute(df, types, seed)
    return sklearn_impute(method, df, types, seed)


# ---------------------------------------------------------------- scores
def hivae_error(truth: pd.DataFrame, filled: pd.DataFrame, hidden: np.ndarray,
                types: list[str], nclass: list[int]) -> float:
    """HI-VAE's error_computation: per column, then the mean over columns."""
    errs = []
    for j, (name, kind) in enumerate(zip(truth.columns, types)):
        rows = hidden[:, j]
        if not rows.any():
            continue
        t = truth[name].to_numpy(dtype=float)[rows]
        p = filled[name].to_numpy(dtype=float)[rows]
        if kind == "categorical":
            errs.append(float(np.mean(t != p)))
        elif kind == "ordinal":
            errs.append(float(np.mean(np.abs(t - p))) / nclass[j])
        else:
            full = truth[name].to_numpy(dtype=float)
            errs.append(float(np.sqrt(np.mean((t - p) ** 2))) / (np.nanmax(full) - np.nanmin(full)))
    return float(np.mean(errs))


def _mse(x: np.ndarray, hidden: np.ndarray, filled: pd.DataFrame) -> float:
    return float(np.mean((filled.to_numpy() - x)[hidden] ** 2))


def _hivae_error(truth: pd.DataFrame, hidden: np.ndarray, types: list[str], nclass: list[int],
                 filled: pd.DataFrame) -> float:
    return hivae_error(truth, filled, hidden, types, nclass)


# ---------------------------------------------------------------- the parts
def part_miwae(seeds: list[int], methods: list[str], quick: bool) -> list[dict[str, Any]]:
    from sklearn.datasets import load_breast_cancer

    x = load_breast_cancer().data
    x = (x - x.mean(0)) / x.std(0)
    n, p = x.shape
    truth = pd.DataFrame(x, columns=[f"x{i + 1}" for i in range(p)])
    rows = []
    for seed in seeds:
        hidden = np.random.default_rng(seed).random((n, p)) < 0.5
        df = truth.mask(hidden)
        for method in methods:
            fill = partial(impute, method, df, ["real"] * p, "breast-cancer", seed, quick)
            rows.append(_measure("miwae", "breast-cancer", seed, method, fill,
                                 partial(_mse, x, hidden)))
    return rows


def sklearn_standardized(name: str) -> pd.DataFrame:
    """A scikit-learn table of the defaults part, every column standardized."""
    import sklearn.datasets

    if name == "diabetes":
        bunch = sklearn.datasets.load_diabetes(scaled=False)
        x, names = np.c_[bunch.data, bunch.target], [*bunch.feature_names, "progression"]
    else:
        bunch = getattr(sklearn.datasets, f"load_{name}")()
        x, names = bunch.data, list(bunch.feature_names)
    x = (x - x.mean(0)) / x.std(0)
    return pd.DataFrame(x, columns=[str(c) for c in names])


def part_defaults(datasets: list[str], seeds: list[int], methods: list[str]
                  ) -> list[dict[str, Any]]:
    """Each table with a share :data:`DEFAULTS_HIDDEN` of its cells hidden, one mask per
    seed; every method on the same masks; MSE on the hidden cells (standardized units)."""
    rows = []
    for name in datasets:
        truth = sklearn_standardized(name)
        x = truth.to_numpy()
        for seed in seeds:
            hidden = np.random.default_rng(seed).random(x.shape) < DEFAULTS_HIDDEN
            df = truth.mask(hidden)
            for method in methods:
                fill = partial(impute, method, df, ["real"] * x.shape[1], name, seed, False)
                rows.append(_measure("defaults", name, seed, method, fill,
                                     partial(_mse, x, hidden)))
    return rows


def read_hivae(name: str) -> tuple[pd.DataFrame, list[str], list[int]]:
    folder = HIVAE / name
    df = pd.read_csv(folder / "data.csv", header=None, na_values=["NaN"])
    df.columns = [f"x{i + 1}" for i in range(df.shape[1])]
    text = (folder / "data_types.csv").read_bytes().decode().replace("\r\n", "\n")
    lines = [r.split(",") for r in text.replace("\r", "\n").split("\n")[1:] if r.strip()]
    types = [HIVAE_TYPES[r[0]] for r in lines]
    nclass = [int(r[2]) if r[2].strip() else 0 for r in lines]
    return df, types, nclass


def hivae_mask(name: str, k: int, shape: tuple[int, int]) -> np.ndarray:
    pairs = np.loadtxt(HIVAE / name / f"Missing20_{k}.csv", delimiter=",", dtype=int)
    hidden = np.zeros(shape, dtype=bool)
    hidden[pairs[:, 0] - 1, pairs[:, 1] - 1] = True
    return hidden


def part_hivae(datasets: list[str], masks: dict[str, list[int]], methods: list[str],
               quick: bool) -> list[dict[str, Any]]:
    rows = []
    for name in datasets:
        truth, types, nclass = read_hivae(name)
        known = truth.notna().to_numpy()
        for k in masks[name]:
            hidden = hivae_mask(name, k, truth.shape)
            df = truth.mask(hidden)
            scored = hidden & known
            for method in methods:
                if (name, method) in SKIP:
                    rows.append(_record({"part": "hivae", "data": name, "mask": k,
                                         "method": method, "error": SKIP[name, method],
                                         "cpu_s": float("nan")}))
                    continue
                fill = partial(impute, method, df, types, name, k, quick)
                score = partial(_hivae_error, truth, scored, types, nclass)
                rows.append(_measure("hivae", name, k, method, fill, score))
    return rows


def part_synthesis(datasets: list[str], quick: bool) -> list[dict[str, Any]]:
    """Train varfam on the training rows, sample as many synthetic rows, fit a classifier
    of the target on real or on synthetic rows, test both on the real held-out rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    targets = {"Adult": ("x9", "sex"), "Wine": ("x13", "red or white"),
               "Breast": ("x10", "benign or malignant")}
    rows = []
    for name in datasets:
        df, types, _ = read_hivae(name)
        target, what = targets[name]
        g = np.random.default_rng(0)
        test = g.random(len(df)) < 0.2
        real, held = df[~test].reset_index(drop=True), df[test].reset_index(drop=True)
        s = dict(VARFAM[name])
        if quick:
            s.update(epochs=max(1, s["epochs"] // 10))
        t = load_table(real, column_types=[{"type": k} for k in types])
        opts = t.model_options()
        opts["likelihood_options"].update(LIKELIHOOD)
        torch.manual_seed(0)
        model = VAE.build(**opts, **NETWORK)
        t0 = time.process_time()
        train(model, Dataset(name, t.x, t.x[:256]), epochs=s["epochs"],
              batch_size=s["batch_size"], lr=1e-3, objective="iwae",
              objective_options={"k": s["k"], **OBJECTIVE}, eval_every=s["epochs"])
        synthetic = sample_table(model, len(real), seed=0)
        seconds = time.process_time() - t0
        held = held[held[target].notna()]
        for source, frame in (("real rows", real), ("varfam synthetic rows", synthetic)):
            frame = frame[frame[target].notna()]
            clf = HistGradientBoostingClassifier(random_state=0)
            clf.fit(frame.drop(columns=target).to_numpy(float), frame[target].to_numpy(float))
            acc = clf.score(held.drop(columns=target).to_numpy(float),
                            held[target].to_numpy(float))
            rows.append(_record({"part": "synthesis", "data": name, "mask": 0,
                                 "method": source, "score": acc, "target": what,
                                 "cpu_s": seconds, "train_rows": int(len(frame)),
                                 "test_rows": int(len(held))}))
            print(f"synthesis {name} {source}: accuracy {acc:.4f}", flush=True)
    return rows


#: Where measured rows are appended as they come (set by main), so a stopped run keeps them.
SINK: list[Path] = []


def _record(row: dict[str, Any]) -> dict[str, Any]:
    for path in SINK:
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return row


def _measure(part: str, data: str, mask: int, method: str, run: Callable[[], pd.DataFrame],
             score: Callable[[pd.DataFrame], float]) -> dict[str, Any]:
    t0 = time.process_time()
    row: dict[str, Any] = {"part": part, "data": data, "mask": mask, "method": method,
                           "date": time.strftime("%Y-%m-%d")}
    try:
        filled = run()
        row["score"] = score(filled)
    except ImportError as e:
        row["error"] = f"not installed ({e.name})"
    except Exception as e:  # a baseline that fails is reported, the rest still runs
        traceback.print_exc()
        row["error"] = f"failed: {type(e).__name__}: {e}"
    row["cpu_s"] = time.process_time() - t0
    print(f"{part} {data} mask {mask} {method}: "
          f"{row.get('score', row.get('error'))} ({row['cpu_s']:.0f} s CPU)", flush=True)
    return _record(row)


# ---------------------------------------------------------------- the tables
def _mean_sd(values: list[float]) -> str:
    if not values:
        return "–"
    m = float(np.mean(values))
    return f"{m:.4f} ± {float(np.std(values, ddof=1)):.4f}" if len(values) > 1 else f"{m:.4f}"


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    out = [f"Measured by `python benchmarks/tables.py` on {meta.get('machine', '?')} "
           f"({meta.get('date', '?')}); CPU seconds are process time (the machine was shared)."]
    miwae = [r for r in rows if r["part"] == "miwae"]
    if miwae:
        seeds = sorted({r["mask"] for r in miwae})
        out += ["", "**1. Continuous, MIWAE's protocol** — breast cancer (569 × 30), "
                f"standardized, 50 % MCAR, {len(seeds)} mask seeds ({', '.join(map(str, seeds))}): "
                "mean squared error on the missing cells (mean ± s.d. over the masks; lower is "
                "better). MIWAE's notebook reports 0.287.", "",
                "| method | MSE | CPU s per mask |", "|---|---|---|"]
        out += _method_rows(miwae)
    hivae = [r for r in rows if r["part"] == "hivae"]
    if hivae:
        names = [n for n in ("Adult", "Breast", "Wine") if any(r["data"] == n for r in hivae)]
        masks = {n: sorted({r["mask"] for r in hivae if r["data"] == n}) for n in names}
        out += ["", "**2. Mixed types, HI-VAE's protocol** — HI-VAE's 20 % masks "
                + "; ".join(f"{n}: masks {_ranges(masks[n])}" for n in names)
                + ". HI-VAE's error (error rate for categories, |Δ|/classes for ordinal "
                "columns, RMSE/range for numbers, mean over columns), mean ± s.d. over the "
                "masks; lower is better.", "",
                "| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for method in METHODS:
            cells = []
            for n in names:
                got = [r for r in hivae if r["data"] == n and r["method"] == method]
                scores = [r["score"] for r in got if "score" in r]
                cells.append(_mean_sd(scores) if scores else
                             (got[0].get("error", "–") if got else "–"))
            if any(c != "–" for c in cells):
                out.append(f"| {method} | " + " | ".join(cells) + " |")
        cpu = {n: {m: np.mean([r["cpu_s"] for r in hivae if r["data"] == n
                               and r["method"] == m] or [float("nan")]) for m in METHODS}
               for n in names}
        out += ["", "CPU seconds per mask: " + "; ".join(
            f"{n}: " + ", ".join(f"{m} {cpu[n][m]:.0f}" for m in METHODS
                                 if not math.isnan(cpu[n][m])) for n in names) + "."]
    syn = [r for r in rows if r["part"] == "synthesis"]
    if syn:
        out += ["", "**3. Synthesis** — a gradient-boosting classifier "
                "(`HistGradientBoostingClassifier`) trained on the real training rows (80 %) or "
                "on as many varfam synthetic rows (sampled from a model trained on those "
                "rows), tested on the real held-out rows (20 %): accuracy.", "",
                "| data | target | trained on real rows | trained on synthetic rows |",
                "|---|---|---|---|"]
        for n in sorted({r["data"] for r in syn}):
            got = {r["method"]: r for r in syn if r["data"] == n}
            out.append(f"| {n} | {got['real rows']['target']} | "
                       f"{got['real rows']['score']:.4f} | "
                       f"{got['varfam synthetic rows']['score']:.4f} |")
    out += _render_defaults([r for r in rows if r["part"] == "defaults"])
    return "\n".join(out)


def _render_defaults(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    names = [n for n in DEFAULTS_TABLES if any(r["data"] == n for r in rows)]
    seeds = sorted({r["mask"] for r in rows})
    dates = sorted({r["date"] for r in rows if "date" in r})
    out = ["", f"**4. Defaults** ({', '.join(dates) or 'undated'}) — no setting but the "
           "data: `varfam train --data holes.csv` "
           "then `varfam impute` (in Python `varfam.train_from_config(RunConfig(data="
           "DataConfig(source=csv)))` and `varfam.impute`; the training settings are chosen "
           "from the table, see [training](training.md)). scikit-learn's diabetes (442 × 11) "
           "and wine (178 × 13) tables, standardized, "
           f"{DEFAULTS_HIDDEN * 100:.0f} % of the cells hidden completely at random, "
           f"{len(seeds)} masks (seeds {', '.join(map(str, seeds))}): mean squared error on "
           "the hidden cells (mean ± s.d. over the masks; lower is better), and CPU seconds "
           "per mask.", "",
           "| method | " + " | ".join(names) + " | CPU s per mask |",
           "|---|" + "---|" * (len(names) + 1)]
    for method in DEFAULTS_METHODS:
        got = [r for r in rows if r["method"] == method]
        if not got:
            continue
        cells = []
        for n in names:
            scores = [r["score"] for r in got if r["data"] == n and "score" in r]
            cells.append(_mean_sd(scores))
        cpu = " / ".join(f"{np.mean([r['cpu_s'] for r in got if r['data'] == n]):.1f}"
                         for n in names if any(r["data"] == n for r in got))
        out.append(f"| {method} | " + " | ".join(cells) + f" | {cpu} |")
    return out


def _method_rows(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for method in METHODS:
        got = [r for r in rows if r["method"] == method]
        if not got:
            continue
        scores = [r["score"] for r in got if "score" in r]
        text = _mean_sd(scores) if scores else got[0].get("error", "–")
        out.append(f"| {method} | {text} | {np.mean([r['cpu_s'] for r in got]):.0f} |")
    return out


def _ranges(values: list[int]) -> str:
    if values == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"{values[0]}–{values[-1]}"
    return ", ".join(map(str, values))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="miwae,hivae,synthesis")
    p.add_argument("--seeds", default="0,1,2,3,4", help="mask seeds of the miwae and defaults "
                   "parts")
    p.add_argument("--datasets", default="Breast,Wine,Adult")
    p.add_argument("--masks", default="Adult:1,Breast:1-10,Wine:1-3",
                   help="HI-VAE masks per data set, e.g. Breast:1-10,Wine:1,2")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--tables", default=",".join(DEFAULTS_TABLES),
                   help="the defaults part's tables (diabetes, wine)")
    p.add_argument("--out", default=str(ROOT / "docs" / "tables_benchmark.jsonl"))
    p.add_argument("--results", default=str(ROOT / "docs" / "results.md"))
    p.add_argument("--quick", action="store_true", help="a tenth of the epochs (a smoke test)")
    p.add_argument("--min-scale", type=float, default=LIKELIHOOD["min_scale"],
                   help="floor of the Gaussian scales of varfam's real and positive columns")
    p.add_argument("--estimator", default=OBJECTIVE["estimator"],
                   help="varfam's IWAE gradient estimator: plain, stl or dreg")
    p.add_argument("--render", action="store_true", help="only render --out into --results")
    args = p.parse_args(argv)
    out = Path(args.out)
    torch.set_num_threads(1)
    LIKELIHOOD["min_scale"], OBJECTIVE["estimator"] = args.min_scale, args.estimator
    if not args.render:
        parts = args.parts.split(",")
        methods = [m for m in args.methods.split(",") if m]
        datasets = args.datasets.split(",")
        masks = _parse_masks(args.masks)
        rows: list[dict[str, Any]] = []
        SINK.append(out)
        if "miwae" in parts:
            rows += part_miwae([int(s) for s in args.seeds.split(",")], methods, args.quick)
        if "hivae" in parts:
            rows += part_hivae(datasets, masks, methods, args.quick)
        if "synthesis" in parts:
            rows += part_synthesis(datasets, args.quick)
        if "defaults" in parts:
            chosen = [m for m in methods if m in DEFAULTS_METHODS] if args.methods != \
                ",".join(METHODS) else DEFAULTS_METHODS
            rows += part_defaults(args.tables.split(","), [int(s) for s in args.seeds.split(",")],
                                  chosen)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    latest: dict[tuple, dict[str, Any]] = {}
    for r in rows:  # a later run of the same cell replaces an earlier one
        latest[(r["part"], r["data"], r["mask"], r["method"])] = r
    meta = {"machine": f"{platform.machine()} CPU, torch {torch.__version__}, 1 thread",
            "date": time.strftime("%Y-%m-%d")}
    write_block(Path(args.results), BEGIN, END, render(list(latest.values()), meta),
                heading="## Tables and missing values")
    print(f"wrote {args.results}", file=sys.stderr)
    return 0


def _parse_masks(text: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for item in text.split(","):
        if ":" in item:
            name, spec = item.split(":", 1)
            out.setdefault(name, [])
        else:
            spec = item
        for part in spec.split("+"):
            if "-" in part:
                a, b = part.split("-")
                out[name] += list(range(int(a), int(b) + 1))
            elif part:
                out[name].append(int(part))
    return out


if __name__ == "__main__":
    sys.exit(main())
