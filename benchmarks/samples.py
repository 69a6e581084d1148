"""The samples benchmark: does a sampler fitted after training give better samples than p(z)?

For each data set (default ``mnist5k`` and ``fashion-mnist``), model (default the
textbook VAE: MLP 400, D = 20, diagonal Gaussian, Bernoulli likelihood on grey
values; ``vamp`` adds a VampPrior model) and seed, this trains the model, fits every
registered sampler (``prior``, ``gmm``, ``flow``, ``two-stage``) on the training set
through :func:`varfam.samplers.fitted_sampler` (stored in the run folder), and
measures N samples of each against the training set with
:func:`varfam.evaluation.sample_quality.measure_samples`: FD, KID, precision and
recall on varfam's own feature network (:mod:`varfam.evaluation.features`, trained
on the data's labels and cached), with the floor (test set against training set).
N is the test set's size, so the samples and the floor are measured alike.

Every measurement is one JSON line in ``--lines``, so seeds can run in separate
processes and be merged; ``--merge`` reads lines back (no training) and writes the
table into ``--results`` (default ``docs/samples.md``) between
``<!-- samples:begin -->`` and ``<!-- samples:end -->``, with mean ± standard
deviation over the seeds and one picture grid per sampler (first seed).

    python benchmarks/samples.py --datasets mnist5k --seeds 0 --lines /tmp/s0.jsonl &
    python benchmarks/samples.py --datasets mnist5k --seeds 1 2 --lines /tmp/s12.jsonl
    python benchmarks/samples.py --merge /tmp/s0.jsonl /tmp/s12.jsonl

These numbers compare samplers and models on the same data set inside varfam; they
are not the Inception FIDs of papers.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle threads sleep

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from _doc_block import write_block  # noqa: E402

import varfam  # noqa: E402
from varfam.data import load_dataset  # noqa: E402
from varfam.evaluation.features import feature_extractor  # noqa: E402
from varfam.evaluation.sample_quality import NOTE, draw_samples, measure_samples  # noqa: E402
from varfam.model import VAE  # noqa: E402
from varfam.samplers import SAMPLERS, fitted_sampler  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- samples:begin -->", "<!-- samples:end -->"
#: Epochs of the default run per data set (Fashion-MNIST's epochs are 13x longer).
DEFAULT_EPOCHS = {"mnist5k": 30, "fashion-mnist": 10}
MODELS = {"textbook": {}, "vamp": {"prior": "vamp"}}


def run(dataset: str, model_name: str, seed: int, args: argparse.Namespace) -> list[dict]:
    """Train one model, fit and measure every sampler; one record per sampler and the floor."""
    ds = load_dataset(dataset)
    epochs = args.epochs or DEFAULT_EPOCHS.get(dataset, 10)
    draws = args.fit_on == "draw"  # recorded as the model "NAME, fitted on draws"
    label = f"{model_name}, fitted on draws" if draws else model_name
    stem = f"{model_name}-draws" if draws else model_name  # of the pictures' files
    run_dir = args.runs / f"{dataset}-{model_name}-{seed}"
    torch.manual_seed(seed)
    model = VAE.build(data_shape=ds.data_shape, **MODELS[model_name])
    start = time.perf_counter()
    varfam.train(model, ds, out=run_dir, epochs=epochs, seed=seed, time_limit=args.budget)
    trained = time.perf_counter() - start
    model.eval()
    features = feature_extractor(ds.train, ds.train_labels, test=ds.test,
                                 test_labels=ds.test_labels)
    samplers, fit = {}, {}
    for name in args.samplers:
        start = time.perf_counter()
        options = {"fit_on": args.fit_on} if SAMPLERS.get(name).needs_fit else None
        samplers[name] = fitted_sampler(run_dir, model, name, ds.train, refit=True,
                                        options=options)
        fit[name] = time.perf_counter() - start
    quality = measure_samples(model, samplers, features, ds.train, ds.test, seed=seed)
    base = {"dataset": dataset, "model": label, "seed": seed, "epochs": epochs,
            "train_seconds": round(trained, 1), "features": features.description,
            "threads": torch.get_num_threads()}
    records = []
    for name, q in quality.items():
        extra = {} if name == "floor" else {"fit_seconds": round(fit[name], 2),
                                             "describe": samplers[name].describe()}
        records.append({**base, "sampler": name, **q.as_record(), **extra})
    if args.pictures and seed == args.seeds[0]:
        from varfam.reporting.pictures import save_grid

        for name, sampler in samplers.items():
            path = ROOT / "docs" / "images" / "samples" / f"{dataset}-{stem}-{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_grid(draw_samples(model, 64, sampler, seed=seed), path, ncol=8)
    return records


def read_lines(paths: list[Path]) -> list[dict]:
    """Records from JSON-lines files; a later line for the same run and sampler wins."""
    kept: dict[tuple, dict] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                kept[(r["dataset"], r["model"], r["seed"], r["sampler"])] = r
    return list(kept.values())


def _spread(values: list[float], digits: int, scale: float = 1.0) -> str:
    values = [v * scale for v in values]
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(records: list[dict]) -> str:
    """The Markdown tables: one per data set and model, a row per sampler, and the goal."""
    out = []
    groups = sorted({(r["dataset"], r["model"]) for r in records})
    for dataset, model in groups:
        rows = [r for r in records if (r["dataset"], r["model"]) == (dataset, model)]
        seeds = sorted({r["seed"] for r in rows})
        first = rows[0]
        name, _, fitted = model.partition(", ")  # "textbook, fitted on draws"
        title = f"{name} VAE" + (f", samplers {fitted}" if fitted else "")
        out.append(f"### {dataset}, {title}\n\n{len(seeds)} seed{'s' * (len(seeds) != 1)} "
                   f"({', '.join(map(str, seeds))}), {first['epochs']} epochs; N = "
                   f"{first['n']} samples against {first['n_reference']} training images; "
                   f"{first['features']}.\n")
        out.append("| sampler | FD | KID × 10³ | precision | recall | fit (s) "
                   "| chosen (first seed) |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        means = {}
        names = ["floor"] + [n for n in SAMPLERS.names() if any(r["sampler"] == n for r in rows)]
        for name in names:
            mine = sorted((r for r in rows if r["sampler"] == name), key=lambda r: r["seed"])
            if not mine:
                continue
            col = {k: [r[k] for r in mine] for k in ("fd", "kid", "precision", "recall")}
            means[name] = {k: statistics.fmean(v) for k, v in col.items()}
            label = "test vs train (floor)" if name == "floor" else f"`{name}`"
            fit = "" if name == "floor" else _spread([r["fit_seconds"] for r in mine], 1)
            chosen = "" if name == "floor" else mine[0]["describe"]
            out.append(f"| {label} | {_spread(col['fd'], 2)} | {_spread(col['kid'], 2, 1e3)} | "
                       f"{_spread(col['precision'], 3)} | {_spread(col['recall'], 3)} | {fit} | "
                       f"{chosen} |")
        posthoc = [n for n in means if n not in ("floor", "prior")]
        if "prior" in means and posthoc:
            best = min(posthoc, key=lambda n: means[n]["fd"])
            b, p = means[best], means["prior"]
            ratio = b["fd"] / p["fd"]
            met = (ratio <= 0.5 and b["precision"] >= p["precision"]
                   and b["recall"] >= p["recall"] - 0.05)
            out.append(f"\nBest post-hoc sampler: `{best}`, FD {ratio:.2f} of the prior's, "
                       f"precision {b['precision'] - p['precision']:+.3f}, recall "
                       f"{b['recall'] - p['recall']:+.3f} (goal: FD at most 0.5 of the "
                       f"prior's, precision up, recall down at most 0.05): "
                       f"**{'met' if met else 'not met'}**.\n")
        pictures = [n for n in names if n != "floor"
                    and (ROOT / "docs/images/samples" / f"{dataset}-{model}-{n}.png").exists()]
        if pictures:
            out.append("| " + " | ".join(f"`{n}`" for n in pictures) + " |")
            out.append("| " + " | ".join("---" for _ in pictures) + " |")
            out.append("| " + " | ".join(f"![{n}](images/samples/{dataset}-{model}-{n}.png)"
                                         for n in pictures) + " |\n")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["mnist5k", "fashion-mnist"])
    p.add_argument("--models", nargs="+", default=["textbook"], choices=sorted(MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--samplers", nargs="+", default=None, help="default: every registered one")
    p.add_argument("--fit-on", choices=("mean", "draw"), default="mean",
                   help="fit the samplers on the encoder means (default) or on one posterior "
                        "draw per training image (recorded as the model 'NAME, fitted on "
                        "draws')")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs per training (default per data set: {DEFAULT_EPOCHS})")
    p.add_argument("--budget", type=float, default=None, help="minutes per training at most")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--runs", type=Path, default=Path("/tmp/varfam-samples"),
                   help="folder of the run folders")
    p.add_argument("--lines", type=Path, default=Path("/tmp/varfam-samples/lines.jsonl"),
                   help="JSON-lines file the measurements are appended to")
    p.add_argument("--merge", type=Path, nargs="+", metavar="LINES",
                   help="only write the table from these JSON-lines files")
    p.add_argument("--results", type=Path, default=ROOT / "docs" / "samples.md")
    p.add_argument("--no-pictures", dest="pictures", action="store_false")
    p.add_argument("--note", default="", help="a sentence to put above the tables")
    args = p.parse_args(argv)
    args.samplers = args.samplers or SAMPLERS.names()
    torch.set_num_threads(args.threads)
    if args.merge is None:
        args.lines.parent.mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets:
            for model in args.models:
                for seed in args.seeds:
                    start = time.perf_counter()
                    records = run(dataset, model, seed, args)
                    with open(args.lines, "a") as f:
                        f.writelines(json.dumps(r) + "\n" for r in records)
                    print(f"{dataset} {model} seed {seed}: {time.perf_counter() - start:.0f} s",
                          file=sys.stderr)
        paths = [args.lines]
    else:
        paths = args.merge
    records = read_lines(paths)
    threads = sorted({r.get("threads", args.threads) for r in records})
    body = (f"{args.note}\n\n" if args.note else "") + (
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()} with "
        f"{'/'.join(map(str, threads))} torch thread(s) (`python benchmarks/samples.py`); "
        f"{NOTE}.\n\n" + table(records))
    write_block(args.results, BEGIN, END, body, title="# Samples\n")
    print(body)


if __name__ == "__main__":
    main()
