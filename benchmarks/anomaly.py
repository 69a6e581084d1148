"""The anomaly benchmark (issue 28): out-of-distribution images and outliers in tables.

Parts (``--parts``):

1. ``ood``: a VAE (the default MLP 784-400-20, diagonal family, Bernoulli likelihood on
   grey values) trained on Fashion-MNIST scores its test images (in-distribution)
   against mnist5k's digits (out-of-distribution), and the reverse (trained on
   mnist5k's training split; its test digits against Fashion-MNIST test images). Per
   method and seed: AUROC, AUPRC (out-of-distribution as the positive class) and the
   false-positive rate at 95 % true-positive rate. The Nalisnick et al. (2019) failure
   is part of the result: plain ``nll`` ranks the digits as *more* typical.
2. ``oneclass``: one VAE per Fashion-MNIST class, trained on that class only, scores
   the test set (that class against the other nine); mean AUROC over the 10 classes.
3. ``tables``: breast cancer (benign rows, malignant rows subsampled to 5 % of the set)
   and wine (classes 1 and 2, class 0 subsampled to 5 %), a fresh subsample per seed,
   standardized; every detector is fitted on the contaminated rows and scores the same
   rows (AUROC, rare class positive): varfam's scores against IsolationForest,
   LocalOutlierFactor and, where pyod is installed, pyod's VAE and KNN. Also
   ``VAEOutlierDetector``'s ``nll`` after ``--table-refits`` trimmed refits of
   ``--table-steps`` optimizer steps each (chosen on seeds 10-14, docs/anomaly.md).

Every run appends one JSON line per (part, data, method, seed) to ``--out``; the
summary (mean ± standard deviation over seeds) is printed as Markdown tables.

    python benchmarks/anomaly.py --short                 # the short budget of docs/anomaly.md
    python benchmarks/anomaly.py --parts ood --seeds 3   # full sizes (tens of minutes of CPU)
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spinning on a busy machine

import argparse
import json
import platform
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

import varfam
from varfam.data import Dataset
from varfam.evaluation.scores import fit_background, score

IMAGE_METHODS = ("nll", "elbo", "recon", "ratio", "complexity", "regret")
TABLE_METHODS = ("nll", "elbo", "recon", "ratio", "regret")


# ---------------------------------------------------------------- measures
def fpr_at_95_tpr(truth: np.ndarray, s: np.ndarray) -> float:
    """The share of in-distribution rows flagged where 95 % of the anomalies are flagged."""
    fpr, tpr, _ = roc_curve(truth, s)
    return float(fpr[np.searchsorted(tpr, 0.95, side="left")])


def measures(truth: np.ndarray, s: np.ndarray) -> dict[str, float]:
    return {"auroc": float(roc_auc_score(truth, s)),
            "auprc": float(average_precision_score(truth, s)),
            "fpr95": fpr_at_95_tpr(truth, s)}


class Log:
    """Appends result lines to a JSON-lines file and keeps them for the summary."""

    def __init__(self, path: Path) -> None:
        self.path, self.rows = path, []
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, **row: Any) -> None:
        row = {**row, "machine": platform.node(), "threads": torch.get_num_threads()}
        self.rows.append(row)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                 if k not in ("machine", "threads")}
        print(json.dumps(shown), flush=True)


# ---------------------------------------------------------------- images
def _image_model(seed: int) -> varfam.VAE:
    torch.manual_seed(seed)
    return varfam.VAE.build(data_shape=(1, 28, 28), latent_dim=20, hidden=(400,))


def score_images(log: Log, part: str, name: str, model: varfam.VAE, train: torch.Tensor,
                 x_in: torch.Tensor, x_out: torch.Tensor, seed: int, args: argparse.Namespace,
                 methods: tuple[str, ...] = IMAGE_METHODS) -> None:
    x = torch.cat([x_in, x_out])
    truth = np.r_[np.zeros(len(x_in)), np.ones(len(x_out))]
    for method in methods:
        t0 = time.perf_counter()
        opts: dict[str, Any] = {"seed": seed}
        if method in ("nll", "ratio", "complexity"):
            opts["k"] = args.k
        if method == "ratio":
            opts["background"] = fit_background(model, train, epochs=args.background_epochs,
                                                seed=seed)
        s = score(model, x, method, **opts).numpy()
        log.add(part=part, data=name, method=method, seed=seed, n_in=len(x_in),
                n_out=len(x_out), seconds=time.perf_counter() - t0, **measures(truth, s))


def part_ood(log: Log, args: argparse.Namespace) -> None:
    fashion = varfam.load_dataset("fashion-mnist")
    digits = varfam.load_dataset("mnist5k")
    n_train, n_test = (args.train_rows, args.test_rows)
    pairs = [
        ("fashion-mnist -> mnist5k", fashion.limit(n_train, n_test),
         torch.cat([digits.train, digits.test])[:n_test], args.epochs),
        ("mnist5k -> fashion-mnist", digits, fashion.test[:n_test], args.epochs_mnist),
    ]
    for name, data, x_out, epochs in pairs:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            model = _image_model(seed)
            t0 = time.perf_counter()
            varfam.train(model, data, epochs=epochs, seed=seed, eval_every=epochs)
            log.add(part="ood", data=name, method="(training)", seed=seed,
                    n_train=int(data.train.shape[0]), epochs=epochs,
                    seconds=time.perf_counter() - t0)
            score_images(log, "ood", name, model.eval(), data.train, data.test, x_out, seed, args)
    if args.regret_rows:
        model = _image_model(0)
        varfam.train(model, fashion.limit(n_train, 100), epochs=1, seed=0)
        x = fashion.test[: args.regret_rows]
        t0 = time.perf_counter()
        score(model, x, "regret")
        log.add(part="ood", data="fashion-mnist test", method="regret (timing)", seed=0,
                n=int(x.shape[0]), seconds=time.perf_counter() - t0)


def part_oneclass(log: Log, args: argparse.Namespace) -> None:
    fashion = varfam.load_dataset("fashion-mnist")
    test, labels = fashion.test[: args.test_rows], fashion.test_labels[: args.test_rows]
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for c in range(10):
            rows = fashion.train[fashion.train_labels == c][: args.train_rows]
            data = Dataset(f"class {c}", rows, rows[:100])
            model = _image_model(seed)
            varfam.train(model, data, epochs=args.epochs, seed=seed, eval_every=args.epochs)
            score_images(log, "oneclass", f"class {c}", model.eval(), rows, test[labels == c],
                         test[labels != c], seed, args, args.oneclass_methods)


# ---------------------------------------------------------------- tables
def table_rows(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(X standardized, truth: 1 = rare class) with the rare class at 5 % of the rows."""
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.preprocessing import StandardScaler

    if name == "breast-cancer":
        X, y = load_breast_cancer(return_X_y=True)
        rare = y == 0  # malignant
    else:
        X, y = load_wine(return_X_y=True)
        rare = y == 0
    rng = np.random.default_rng(seed)
    common = np.flatnonzero(~rare)
    n_rare = max(2, round(0.05 / 0.95 * len(common)))
    chosen = rng.choice(np.flatnonzero(rare), n_rare, replace=False)
    idx = np.r_[common, chosen]
    truth = np.r_[np.zeros(len(common)), np.ones(n_rare)]
    return StandardScaler().fit_transform(X[idx]), truth


def part_tables(log: Log, args: argparse.Namespace) -> None:
    for name in ("breast-cancer", "wine"):
        for seed in range(args.first_seed, args.first_seed + args.table_seeds):
            table_seed(log, name, seed, args)


def table_seed(log: Log, name: str, seed: int, args: argparse.Namespace) -> None:
    """Every detector on one subsample of one table. varfam's seconds include its training."""
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor

    X, truth = table_rows(name, seed)

    def add(method: str, s: np.ndarray, t0: float) -> None:
        log.add(part="tables", data=name, method=method, seed=seed, n=len(X),
                n_rare=int(truth.sum()), seconds=time.perf_counter() - t0,
                **measures(truth, s))

    t0 = time.perf_counter()
    add("IsolationForest", -IsolationForest(random_state=seed).fit(X).score_samples(X), t0)
    t0 = time.perf_counter()
    lof = LocalOutlierFactor(n_neighbors=20).fit(X)
    add("LocalOutlierFactor", -lof.negative_outlier_factor_, t0)
    try:
        from pyod.models.knn import KNN
        from pyod.models.vae import VAE as PyodVAE
    except ImportError:
        pass
    else:
        t0 = time.perf_counter()
        add("pyod KNN", KNN().fit(X).decision_scores_, t0)
        t0 = time.perf_counter()
        pv = PyodVAE(random_state=seed, verbose=0, epoch_num=args.pyod_epochs,
                     preprocessing=False).fit(X)
        add("pyod VAE", pv.decision_scores_, t0)
    t0 = time.perf_counter()
    x = torch.from_numpy(X.astype(np.float32))
    torch.manual_seed(seed)
    model = varfam.VAE.build(data_shape=(X.shape[1],), arch="tabular", hidden=(64,),
                             latent_dim=2, likelihood="mixed")
    varfam.train(model, Dataset(name, x, x[:50]), epochs=args.table_epochs, batch_size=64,
                 seed=seed, eval_every=args.table_epochs)
    model.eval()
    trained = time.perf_counter() - t0
    for method in TABLE_METHODS:
        t0 = time.perf_counter() - trained
        opts: dict[str, Any] = {"seed": seed}
        if method == "ratio":
            opts.update(train=x, epochs=args.table_epochs)
        add(f"varfam {method}", score(model, x, method, **opts).numpy(), t0)
    if args.table_refits:  # nll after trimmed refits (VAEOutlierDetector, same model)
        from varfam.integrations.sklearn import VAEOutlierDetector

        t0 = time.perf_counter()
        det = VAEOutlierDetector(hidden=(64,), latent_dim=2, steps=args.table_steps,
                                 refits=args.table_refits, random_state=seed).fit(X)
        add(f"varfam nll, {args.table_refits} trimmed refits", det.anomaly_score(X), t0)


# ---------------------------------------------------------------- summary
def summary(rows: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if "auroc" in r:
            groups[(r["part"], r["data"] if r["part"] != "oneclass" else "mean of 10 classes",
                    r["method"])].append(r)
    out, last = [], None
    for (part, data, method), rs in groups.items():
        if (part, data) != last:
            out += ["", f"**{part}: {data}**", "",
                    "| method | AUROC | AUPRC | FPR@95%TPR | seeds | seconds |",
                    "|---|---|---|---|---|---|"]
            last = (part, data)
        cells = []
        for key in ("auroc", "auprc", "fpr95"):
            v = np.array([r[key] for r in rs])
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}")
        secs = np.mean([r["seconds"] for r in rs])
        seeds = len({r["seed"] for r in rs})
        out.append(f"| {method} | {' | '.join(cells)} | {seeds} | {secs:.1f} |")
    timing = [r for r in rows if r["method"] in ("(training)", "regret (timing)")]
    if timing:
        out += ["", "| part | data | what | seconds |", "|---|---|---|---|"]
        out += [f"| {r['part']} | {r['data']} | {r['method']} "
                f"{'n=' + str(r.get('n', r.get('n_train')))} | {r['seconds']:.1f} |"
                for r in timing]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", default="ood,tables", help="ood, oneclass, tables (comma list)")
    p.add_argument("--short", action="store_true",
                   help="smaller sets: 10,000 training images, 2,000 test images, 3 epochs, "
                        "K = 50")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--table-seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--train-rows", type=int, default=None)
    p.add_argument("--test-rows", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="Fashion-MNIST epochs")
    p.add_argument("--epochs-mnist", type=int, default=None, help="mnist5k epochs")
    p.add_argument("--k", type=int, default=None, help="importance samples (100; short 50)")
    p.add_argument("--background-epochs", type=int, default=None, help="ratio's (5; short 3)")
    p.add_argument("--table-epochs", type=int, default=10,
                   help="epochs of the table VAEs (default 10: more fit the planted outliers too, "
                        "docs/anomaly.md)")
    p.add_argument("--table-refits", type=int, default=2,
                   help="also score tables with VAEOutlierDetector after this many trimmed "
                        "refits (0: not)")
    p.add_argument("--table-steps", type=int, default=60,
                   help="optimizer steps of each of its fits (default 60)")
    p.add_argument("--pyod-epochs", type=int, default=100)
    p.add_argument("--regret-rows", type=int, default=10000,
                   help="time regret on this many Fashion-MNIST test images (0 skips)")
    p.add_argument("--oneclass-methods", default="nll,complexity,regret")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared machine more threads wait)")
    p.add_argument("--out", type=Path, default=Path("docs/anomaly_runs.jsonl"))
    args = p.parse_args()
    short = args.short
    args.train_rows = args.train_rows or (10000 if short else 60000)
    args.test_rows = args.test_rows or (2000 if short else 10000)
    args.epochs = args.epochs or (3 if short else 10)
    args.epochs_mnist = args.epochs_mnist or (10 if short else 30)
    args.k = args.k or (50 if short else 100)
    args.background_epochs = args.background_epochs or (3 if short else 5)
    args.oneclass_methods = tuple(args.oneclass_methods.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    log = Log(args.out)
    t0 = time.perf_counter()
    parts = {"ood": part_ood, "oneclass": part_oneclass, "tables": part_tables}
    for part in args.parts.split(","):
        parts[part](log, args)
    print(summary(log.rows))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")


if __name__ == "__main__":
    main()
