"""Fashion-MNIST density record: train from the CLI, measure test NLL with K = 5,000.

The protocol of the Exemplar VAE paper (Norouzi et al. 2020): Fashion-MNIST,
dynamically binarized while training; 50,000 train / 10,000 validation (the last
10,000 training images, binarized once) / 10,000 test (binarized once with a
fixed seed). The metric is the test log-likelihood by importance sampling with
K = 5,000, in nats, with its standard error across test images.

For each configuration (a TOML file for ``varfam train --config``) this script

1. runs ``varfam train --config FILE --out RUN`` as a subprocess and times its
   whole wall time (optionally overriding the config's ``time_limit``);
2. meanwhile copies the run's best-so-far weights every ``--snapshot-every``
   minutes, and afterwards scores each snapshot on the first
   ``--curve-limit`` test images with ``--curve-iw`` samples: the curve of test
   NLL against wall time;
3. evaluates the final (best-validation) weights on the validation and test sets
   with ``--iw`` samples (ELBO, NLL ± s.e., active units);
4. appends one JSON line to ``docs/fashion_record.jsonl`` and rewrites the table
   between ``<!-- fashion-record:begin -->`` and ``<!-- fashion-record:end -->``
   in ``docs/results.md``, plus the curve plot ``docs/images/fashion_record_curve.png``.

    python benchmarks/fashion_record.py                                   # the record
    python benchmarks/fashion_record.py --configs configs/fashion-*.toml \\
        --time-limit 4 --iw 1000 --tag ablation                           # the ablation
    python benchmarks/fashion_record.py --render     # re-render docs from the stored rows
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from _doc_block import write_block

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- fashion-record:begin -->", "<!-- fashion-record:end -->"
PUBLISHED = [
    ("VAE, standard prior (gated MLP 300-300, 40-d)", 228.70),
    ("VampPrior", 227.35),
    ("Exemplar VAE", 226.75),
    ("ConvHVAE with VampPrior", 224.67),
]


#: Training settings recorded with each row (beside the model and the objective).
TRAIN_KEYS = ("batch_size", "lr", "lr_schedule", "lr_final_ratio", "time_limit", "compile",
              "compile_mode", "eval_every", "ema")


def train_run(config: Path, run: Path, time_limit: float | None, snapshot_every: float,
              snapshots: Path) -> tuple[float, list[tuple[float, Path]]]:
    """Train from the CLI; return (wall seconds, [(seconds, snapshot weights), ...])."""
    if run.exists():
        shutil.rmtree(run)
    snapshots.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "varfam", "train", "--config", str(config), "--out", str(run),
            "--quiet"]
    if time_limit is not None:
        argv += ["--time-limit", str(time_limit)]
    taken: list[tuple[float, Path]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def snapshot() -> None:
        k = 0
        while not stop.wait(snapshot_every * 60):
            src = run / "model.safetensors"
            if src.exists():
                k += 1
                dst = snapshots / f"snap{k:03d}.safetensors"
                shutil.copyfile(src, dst)
                taken.append((time.perf_counter() - t0, dst))

    thread = threading.Thread(target=snapshot, daemon=True)
    thread.start()
    proc = subprocess.run(argv, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    stop.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"varfam train failed with exit code {proc.returncode} for {config}")
    return wall, taken


def split_data(cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Validation and test images exactly as training saw them (binarized once, fixed seeds)."""
    from varfam.data import binarize_fixed, split_seed
    from varfam.runs.folder import run_dataset, run_test_data

    ds = run_dataset(cfg)
    n_val = cfg.train.validation
    val = ds.train[len(ds.train) - n_val :] if n_val else ds.test[:0]
    if cfg.train.binarize != "none" and n_val:
        val = binarize_fixed(val, split_seed(cfg.train.seed, "validation"))
    test, _ = run_test_data(cfg)
    return val, test


def nll(model, x: torch.Tensor, k: int, seed: int = 0) -> dict[str, float]:
    """Mean −log p(x) ± s.e. and −ELBO (from the same samples) in nats."""
    from varfam.evaluation.bounds import importance_sampling

    res = importance_sampling(model, x, k, seed=seed)
    ll = res.log_likelihood.double()
    return {"nll": float(-ll.mean()), "nll_se": float(ll.std() / math.sqrt(len(ll))),
            "neg_elbo": float(-res.elbo.double().mean())}


def measure(config: Path, args: argparse.Namespace) -> dict[str, Any]:
    from varfam.evaluation.bounds import active_units, latent_locations
    from varfam.reporting.page import read_metrics
    from varfam.runs.checkpoint import _read_safetensors, load_model
    from varfam.runs.folder import open_run

    name = config.stem
    run = Path(args.runs_dir) / name
    if args.reuse and (run / "model.safetensors").is_file():  # measure an existing run again
        wall, snaps = read_metrics(run)[0][-1]["elapsed"], []
    else:
        wall, snaps = train_run(config, run, args.time_limit, args.snapshot_every,
                                Path(args.runs_dir) / f"{name}-snapshots")
    model, cfg = open_run(run)
    val, test = split_data(cfg)
    t0 = time.perf_counter()
    test_m = nll(model, test[: args.eval_limit] if args.eval_limit else test, args.iw)
    val_m = nll(model, val[: args.eval_limit] if args.eval_limit else val, args.iw) if len(val) \
        else {}
    eval_s = time.perf_counter() - t0
    units, _ = active_units(latent_locations(model, test))
    epochs, _ = read_metrics(run)
    curve = []
    for seconds, path in snaps:
        snap = load_model(run)
        state, _ = _read_safetensors(path)
        snap.load_state_dict(state)
        curve.append((seconds, nll(snap, test[: args.curve_limit], args.curve_iw)["nll"]))
    last = epochs[-1] if epochs else {}
    return {
        "tag": args.tag, "config": str(config.relative_to(ROOT)) if config.is_relative_to(ROOT)
        else str(config), "model": cfg.model.__dict__, "objective": cfg.train.objective,
        "objective_options": cfg.train.objective_options,
        "train": {k: getattr(cfg.train, k) for k in TRAIN_KEYS}, "wall_s": wall,
        "epochs": last.get("epoch"), "best_epoch": last.get("best_epoch"),
        "iw": args.iw, "eval_limit": args.eval_limit, "eval_s": eval_s,
        "test": test_m, "validation": val_m, "active_units": units,
        "latent_dim": cfg.model.latent_dim, "curve": curve,
        "curve_iw": args.curve_iw, "curve_limit": args.curve_limit,
        "date": time.strftime("%Y-%m-%d"),
    }


def describe(row: dict[str, Any]) -> str:
    m = row["model"]
    parts = [f"{m['arch']} {','.join(map(str, m['hidden']))}", f"D={m['latent_dim']}",
             m["family"] + (f"({m['family_options']})" if m["family_options"] else ""),
             m["prior"] + (f"({m['prior_options']})" if m["prior_options"] else ""),
             row["objective"] + (f"({row['objective_options']})" if row["objective_options"]
                                 else "")]
    if m.get("likelihood", "bernoulli") != "bernoulli":
        options = m.get("likelihood_options")
        parts.insert(4, m["likelihood"] + (f"({options})" if options else ""))
    t = row.get("train")  # rows before the training settings were recorded have none
    if t:
        decay = f" to {t['lr_final_ratio']:g}×" if t["lr_schedule"] == "cosine" else ""
        parts += [f"batch {t['batch_size']}, lr {t['lr']:g} {t['lr_schedule']}{decay}"]
        mode = t.get("compile_mode", "default")
        compiled = "compiled" + (f" ({mode})" if mode != "default" else "")
        parts += [flag for flag, on in ((compiled, t["compile"]),
                                        (f"eval every {t['eval_every']}", t["eval_every"] > 1),
                                        (f"EMA {t.get('ema')}", t.get("ema") is not None))
                  if on]
    return ", ".join(parts)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| tag | configuration | wall (min) | epochs (best) | validation NLL | test NLL ± s.e. "
        "| test −ELBO | active units | K |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        v, t = r["validation"], r["test"]
        k = f"{r['iw']}" + (f" (first {r['eval_limit']})" if r["eval_limit"] else "")
        cells = [
            r["tag"], f"`{r['config']}`: {describe(r)}", f"{r['wall_s'] / 60:.1f}",
            f"{r['epochs']} ({r['best_epoch']})", f"{v['nll']:.2f}" if v else "–",
            f"{t['nll']:.2f} ± {t['nll_se']:.2f}", f"{t['neg_elbo']:.2f}",
            f"{r['active_units']}/{r['latent_dim']}", k,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for r in rows:
        if r["curve"]:
            xs, ys = zip(*r["curve"])
            ax.plot([x / 60 for x in xs], ys, marker="o", ms=3,
                    label=f"{r['tag']}: {Path(r['config']).stem}")
    for label, value in PUBLISHED:
        ax.axhline(value, ls="--", lw=0.8, color="grey")
        ax.text(0.99, value, label, fontsize=7, va="bottom", ha="right", color="grey",
                transform=ax.get_yaxis_transform())
    ax.set_xlabel("wall time (minutes)")
    ax.set_ylabel("test NLL (nats), snapshot estimate")
    ax.set_title("Fashion-MNIST (dynamically binarized): test NLL against training time")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_doc(rows: list[dict[str, Any]], results: Path) -> None:
    body = [
        "Measured by `python benchmarks/fashion_record.py` on this 2-core CPU; every "
        "configuration is trained from the CLI (`varfam train --config FILE`) within its "
        "time limit, and the weights kept are the best on the 10,000 validation images. "
        "NLL = −log p(x) in nats by importance sampling with K samples.",
        "",
        table(rows),
        "",
        "Published single-stochastic-layer results on the same protocol (Exemplar VAE paper, "
        "Norouzi et al. 2020, up to 2,000 epochs): "
        + "; ".join(f"{label} {value:.2f}" for label, value in PUBLISHED) + ".",
        "",
        "![test NLL against wall time](images/fashion_record_curve.png)",
    ]
    write_block(results, BEGIN, END, "\n".join(body), heading="## Fashion-MNIST density record",
                title="# Results\n")


def render(store: Path, args: argparse.Namespace) -> None:
    """Rewrite the docs block and the curve plot from every row in ``store``."""
    rows = [json.loads(s) for s in store.read_text().splitlines() if s.strip()]
    write_doc(rows, Path(args.results))
    plot_curves(rows, Path(args.plot))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=[str(ROOT / "configs/fashion-record.toml")])
    p.add_argument("--time-limit", type=float, help="override each config's minutes")
    p.add_argument("--iw", type=int, default=5000, help="importance samples K (default 5000)")
    p.add_argument("--eval-limit", type=int, default=0, help="first N images only (0 = all)")
    p.add_argument("--snapshot-every", type=float, default=3.0, help="minutes between snapshots")
    p.add_argument("--curve-iw", type=int, default=500)
    p.add_argument("--curve-limit", type=int, default=1000)
    p.add_argument("--tag", default="record")
    p.add_argument("--reuse", action="store_true",
                   help="measure runs already in --runs-dir instead of training them again")
    p.add_argument("--render", action="store_true",
                   help="only rewrite the docs block and the curve from --store (no training)")
    p.add_argument("--runs-dir", default=str(ROOT / "runs/fashion-record"))
    p.add_argument("--store", default=str(ROOT / "docs/fashion_record.jsonl"))
    p.add_argument("--results", default=str(ROOT / "docs/results.md"))
    p.add_argument("--plot", default=str(ROOT / "docs/images/fashion_record_curve.png"))
    args = p.parse_args(argv)
    store = Path(args.store)
    if args.render:
        render(store, args)
        return 0
    for config in args.configs:
        row = measure(Path(config).resolve(), args)
        with store.open("a") as f:
            f.write(json.dumps(row) + "\n")
        t = row["test"]
        print(f"{config}: test NLL {t['nll']:.2f} ± {t['nll_se']:.2f} nats "
              f"({row['wall_s'] / 60:.1f} min, {row['epochs']} epochs)", flush=True)
        render(store, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
