"""The labels benchmark: semi-supervised M2 against its classifier alone, and conditional VAEs.

Writes a section of ``docs/results.md`` between ``<!-- labels:begin -->`` and
``<!-- labels:end -->``:

1. **Semi-supervised Fashion-MNIST**: 50,000 train / 10,000 validation (unlabelled,
   the last 10,000 training images) / 10,000 test; N = 100 and N = 1,000 labels,
   balanced per class and chosen with the seed; 5 seeds. The test accuracy of
   M2's classifier q(y|x) (:mod:`varfam.objectives.labelled`; the weights kept are those
   of the best validation bound, which reads no label) beside the same classifier
   network trained on the N labelled examples alone with the same seed
   (:func:`varfam.objectives.labelled.fit_classifier`). Mean and 95 % interval (Student t
   over the seeds). Every M2 run stops at ``--budget`` minutes.
2. **Semi-supervised mnist5k**: 4,500 / 500, N = 100, the same comparison.
3. **Conditional generation** on Fashion-MNIST and mnist5k: a conditional VAE
   (``--condition label``) and the unconditional VAE of the same size and budget;
   the conditional test log p(x|y) beside log p(x) (importance sampled, K = ``--iw``
   per class, on the first ``--eval-limit`` test images). log p(x|y') is estimated for
   every class y' from the same draws, so the conditional VAE's own log p(x) = log
   Σ_y' p(y') p(x|y') comes with it and the gain of knowing y lies in [0, log 10] for
   every image, as it must; the separately trained VAE's log p(x) stands beside it;
   the "GAN-test" accuracy (Shmelkov, Schmid & Alahari 2018, "How good is my GAN?")
   of a classifier trained on the real training set on 1,000 class-conditional
   samples per class; and the Classification Accuracy Score (Ravuri & Vinyals 2019,
   "Classification Accuracy Score for Conditional Generative Models"): the same
   classifier trained on those generated samples only, tested on the real test set,
   beside it trained on the real training set.

The full run is 10 + 5 + 4 trainings of up to ``--budget`` minutes each plus their
evaluation: about 4 to 5 hours on 2 CPU cores. Each part (``--parts fashion,mnist5k,
generation``) is written between its own markers with the settings it ran with, so a
reduced run (fewer seeds, a shorter budget, smaller K) says so, and one part can be
run again alone::

    python benchmarks/labels.py                                    # the full benchmark
    python benchmarks/labels.py --seeds 2 --budget 2 --iw 100 --eval-limit 1000 \\
        --note "reduced run"                                       # what fits a shared CPU
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import time
from pathlib import Path
from typing import Any

import torch
from _doc_block import write_block

import varfam
from varfam.config import LABELLED_WEIGHTS, ModelConfig, TrainConfig
from varfam.data import Dataset, load_dataset
from varfam.data.labels import class_names, labelled_indices, with_hidden_labels
from varfam.evaluation.bounds import importance_sampling
from varfam.evaluation.classify import accuracy
from varfam.objectives.labelled import objective_options
from varfam.training.labels import fit_classifier

BEGIN, END = "<!-- labels:begin -->", "<!-- labels:end -->"
ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Labels: semi-supervised M2 and conditional VAEs"


# ---------------------------------------------------------------- statistics
def interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % Student-t interval) of ``values`` (half-width nan for one)."""
    from scipy.stats import t

    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, math.nan
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def pct(values: list[float]) -> str:
    m, h = interval([100 * v for v in values])
    return f"{m:.1f}" if math.isnan(h) else f"{m:.1f} ± {h:.1f}"


def overlap(a: list[float], b: list[float]) -> bool:
    (ma, ha), (mb, hb) = interval(a), interval(b)
    if math.isnan(ha) or math.isnan(hb):
        return True
    return not (ma - ha > mb + hb or mb - hb > ma + ha)


# ---------------------------------------------------------------- models
def model_config(ds: Dataset, args: argparse.Namespace, **kw: Any) -> ModelConfig:
    """The networks of every model here: an MLP of ``--hidden`` units, D = ``--latent-dim``."""
    return ModelConfig(data_shape=ds.data_shape, arch="mlp", hidden=tuple(args.hidden),
                       latent_dim=args.latent_dim, likelihood="bernoulli", **kw)


def train_config(name: str, args: argparse.Namespace, seed: int, **kw: Any) -> TrainConfig:
    return TrainConfig(epochs=args.max_epochs, time_limit=args.budget,
                       batch_size=args.batch_size, lr=args.lr, seed=seed,
                       precision="fp32", **kw)


def fit(model_cfg: ModelConfig, data: Dataset, train_cfg: TrainConfig) -> tuple[varfam.VAE, dict]:
    """Train a fresh model; (model, its last history line with the wall time)."""
    torch.manual_seed(train_cfg.seed)
    model = varfam.VAE.build(model_cfg)
    t0 = time.perf_counter()
    result = varfam.train(model, data, train_cfg)
    last = dict(result.history[-1]) if result.history else {}
    last["seconds"] = time.perf_counter() - t0
    return result.model.eval(), last


# ---------------------------------------------------------------- 1, 2: semi-supervised
def semi_supervised(ds: Dataset, name: str, n_labels: int, seed: int, validation: int,
                    args: argparse.Namespace) -> dict[str, Any]:
    """M2 with ``n_labels`` labels and the same classifier on those labels alone."""
    classes = class_names(ds)
    data = with_hidden_labels(ds, n_labels, seed, len(classes), validation=validation)
    cfg = model_config(ds, args, condition="label", n_classes=len(classes), classes=classes,
                       classifier=True)
    options = objective_options(data.train_labels[: len(data.train_labels) - validation],
                                args.alpha)
    tcfg = train_config(name, args, seed, alpha=options["alpha"],
                        labelled_weight=args.labelled_weight, validation=validation,
                        objective_options={"beta": args.beta})
    model, last = fit(cfg, data, tcfg)
    m2 = accuracy(model, ds.test, ds.test_labels)
    chosen = labelled_indices(ds.train_labels, n_labels, seed, len(classes),
                              among=len(ds.train_labels) - validation)
    baseline = fit_classifier(cfg, ds.train[chosen], ds.train_labels[chosen],
                              steps=args.baseline_steps, seed=seed)
    with torch.no_grad():
        base = float((baseline(ds.test).logits.argmax(-1) == ds.test_labels).double().mean())
    generative = generative_accuracy(model, ds.test[: args.eval_limit],
                                     ds.test_labels[: args.eval_limit], len(classes))
    print(f"  {name} N={n_labels} seed {seed}: M2 {m2:.4f}, labelled only {base:.4f}, "
          f"generative {generative:.4f} ({last.get('epoch')} epochs, {last['seconds']:.0f} s)",
          flush=True)
    return {"m2": m2, "baseline": base, "generative": generative, "epochs": last.get("epoch"),
            "seconds": last["seconds"], "alpha": options["alpha"]}


def generative_accuracy(model: varfam.VAE, x: torch.Tensor, y: torch.Tensor, c: int,
                        k: int = 10) -> float:
    """How often M2's generative model itself names the class: argmax over y' of
    log p(x|y') (importance sampled, K = ``k``), the Bayes classifier of p(x|y) p(y) with
    p(y) uniform. Near q(y|x)'s accuracy, the model's y means the class; far below it,
    y has drifted to another clustering of the images."""
    every = torch.stack([importance_sampling(model, x, k, y=torch.full_like(y, j),
                                             seed=j).log_likelihood for j in range(c)])
    return float((every.argmax(0) == y).double().mean())


def semi_table(rows: dict[int, list[dict[str, Any]]]) -> str:
    out = ["| labels N | seeds | M2 test accuracy % | labelled only % | intervals overlap | "
           "M2 − labelled only, same seed (points) | "
           "M2's generative model as a classifier % | epochs (mean) | "
           "minutes per M2 run (mean) | α |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for n, runs in rows.items():
        m2, base = [r["m2"] for r in runs], [r["baseline"] for r in runs]
        gain = pct([a - b for a, b in zip(m2, base)])
        out.append(
            f"| {n} | {len(runs)} | {pct(m2)} | {pct(base)} | "
            f"{'yes' if overlap(m2, base) else 'no'} | {gain} | "
            f"{pct([r['generative'] for r in runs])} | "
            f"{sum(r['epochs'] or 0 for r in runs) / len(runs):.1f} | "
            f"{sum(r['seconds'] for r in runs) / len(runs) / 60:.1f} | {runs[0]['alpha']:.1f} |"
        )
    return "\n".join(out)


# ---------------------------------------------------------------- 3: conditional generation
def generation(ds: Dataset, name: str, args: argparse.Namespace) -> dict[str, Any]:
    classes = class_names(ds)
    c = len(classes)
    plain_cfg = model_config(ds, args)
    cond_cfg = model_config(ds, args, condition="label", n_classes=c, classes=classes)
    cvae, cl = fit(cond_cfg, ds, train_config(name, args, 0))
    vae, pl = fit(plain_cfg, ds, train_config(name, args, 0))
    x, y = ds.test[: args.eval_limit], ds.test_labels[: args.eval_limit]
    # log p(x|y') for every class y' from the same draws: the true class's, and the
    # conditional VAE's own log p(x) = log Σ_y' p(y') p(x|y') (then the difference of the
    # two estimates lies in [0, log C] for every example, as for the exact values)
    every = torch.stack([importance_sampling(cvae, x, args.iw, y=torch.full_like(y, k),
                                             seed=k).log_likelihood for k in range(c)])
    cond = every[y, torch.arange(len(y))]
    marginal = torch.logsumexp(every, 0) - math.log(c)
    plain = importance_sampling(vae, x, args.iw, seed=0).log_likelihood
    # classifiers: trained on the real training set, and on generated samples only
    real = fit_classifier(cond_cfg, ds.train, ds.train_labels, steps=args.classifier_steps)
    torch.manual_seed(1)
    labels = torch.arange(c).repeat_interleave(args.samples_per_class)
    samples = torch.cat([cvae.sample(len(part), part)
                         for part in labels.split(1000)])
    cas_clf = fit_classifier(cond_cfg, samples, labels, steps=args.classifier_steps)
    with torch.no_grad():
        gan_test = float((real(samples).logits.argmax(-1) == labels).double().mean())
        real_acc = float((real(ds.test).logits.argmax(-1) == ds.test_labels).double().mean())
        cas = float((cas_clf(ds.test).logits.argmax(-1) == ds.test_labels).double().mean())
    print(f"  {name}: log p(x|y) {float(cond.mean()):.2f}, its log p(x) "
          f"{float(marginal.mean()):.2f}, VAE log p(x) {float(plain.mean()):.2f}, "
          f"GAN-test {gan_test:.4f}, CAS {cas:.4f} (real {real_acc:.4f})", flush=True)

    def mean_se(v: torch.Tensor) -> str:
        return f"{float(v.mean()):.2f} ± {float(v.std() / math.sqrt(v.numel())):.2f}"

    return {"name": name, "cond": mean_se(cond), "marginal": mean_se(marginal),
            "plain": mean_se(plain), "gain": float((cond - marginal).mean()),
            "vs_plain": float((cond - plain).mean()), "gan_test": gan_test, "cas": cas,
            "real": real_acc, "n_eval": x.shape[0], "epochs": (cl.get("epoch"), pl.get("epoch"))}


def generation_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    out = [f"| data | conditional VAE: log p(x\\|y), K = {args.iw} | its log p(x), y summed out "
           f"| gain of knowing y (0 … log 10 = 2.30) | VAE of the same size: log p(x) "
           f"| log p(x\\|y) − VAE's log p(x) | GAN-test accuracy % | CAS % | real-data "
           f"classifier % | test images | epochs (cond., plain) |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['name']} | {r['cond']} | {r['marginal']} | {r['gain']:.2f} | "
                   f"{r['plain']} | {r['vs_plain']:.2f} | "
                   f"{100 * r['gan_test']:.1f} | {100 * r['cas']:.1f} | {100 * r['real']:.1f} | "
                   f"{r['n_eval']} | {r['epochs'][0]}, {r['epochs'][1]} |")
    return "\n".join(out)


# ---------------------------------------------------------------- the page
def settings(args: argparse.Namespace) -> str:
    return (
        f"Settings of this run: MLP encoder, decoder and classifier of {list(args.hidden)} "
        f"hidden units, D = {args.latent_dim}, Bernoulli likelihood on grey levels, batch "
        f"{args.batch_size}, Adam {args.lr:g}, fp32; each training stops after the epoch in "
        f"which {args.budget:g} minutes passed (at most {args.max_epochs} epochs); α = "
        f"{'0.1 · N / N_labelled (the paper)' if args.alpha is None else args.alpha}; "
        f"labelled rows weighed as their share of the {args.labelled_weight} "
        f"(--labelled-weight {args.labelled_weight}); M2's KL of z weighed β = {args.beta:g} "
        f"(--beta); labelled-only classifier: "
        f"{args.baseline_steps} Adam steps; real-data and CAS "
        f"classifiers: {args.classifier_steps} steps; {args.samples_per_class} samples per "
        f"class; log-likelihoods on the first {args.eval_limit} test images. Seeds "
        f"{args.first_seed}..{args.first_seed + args.seeds - 1}. Machine: "
        f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}."
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds are first-seed .. first-seed + seeds - 1 (split them over "
                        "processes, then --rows-from their logs)")
    p.add_argument("--labels", default="100,1000", help="N of the Fashion-MNIST runs")
    p.add_argument("--budget", type=float, default=10.0, help="minutes per training")
    p.add_argument("--max-epochs", type=int, default=1000)
    p.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",")], default=[500])
    p.add_argument("--latent-dim", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--beta", type=float, default=2.0,
                   help="M2's weight of KL(q(z|x,y) || p(z)) (varfam train --beta): above 1, "
                        "the class is cheaper to carry in y than in z")
    p.add_argument("--labelled-weight", choices=LABELLED_WEIGHTS, default="batch",
                   help="how M2's loss weighs labelled rows: as their share of the batch or of "
                        "the data (varfam train --labelled-weight)")
    p.add_argument("--baseline-steps", type=int, default=500)
    p.add_argument("--classifier-steps", type=int, default=3000)
    p.add_argument("--samples-per-class", type=int, default=1000)
    p.add_argument("--iw", type=int, default=1000)
    p.add_argument("--eval-limit", type=int, default=2000,
                   help="test images of the log-likelihoods (K per class each)")
    p.add_argument("--parts", default="fashion,mnist5k,generation")
    p.add_argument("--generation-data", default="fashion-mnist,mnist5k",
                   help="datasets of the conditional-generation part")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--note", default="", help="a sentence put above the tables")
    p.add_argument("--results", type=Path, default=ROOT / "docs" / "results.md")
    p.add_argument("--rows-from", type=Path, nargs="+", metavar="LOG",
                   help="write the semi-supervised parts from the per-run lines that earlier "
                        "runs printed (e.g. two processes that split the N), training nothing")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    unknown = set(parts) - set(PARTS)
    if unknown:
        p.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    for part in PARTS:
        if part not in parts:
            continue
        t0 = time.perf_counter()
        table = run_part(part, args)
        took = (f"Time of this part: {(time.perf_counter() - t0) / 60:.0f} minutes." if not
                (args.rows_from and part in DATA) else
                f"Read back from the runs' printed lines ({', '.join(map(str, args.rows_from))}).")
        body = [f"### {PARTS[part]}", "", *([f"_{args.note}_", ""] if args.note else []),
                settings(args), "", table, "", took]
        write_part(args.results, part, "\n".join(body))
        print(f"wrote the {part} part of {args.results}", flush=True)


#: The data set of each semi-supervised part.
DATA = {"fashion": "fashion-mnist", "mnist5k": "mnist5k"}
#: The parts of the section, each written between its own markers (a run may redo one).
PARTS = {
    "fashion": "Semi-supervised Fashion-MNIST (50,000 / 10,000 validation / 10,000 test)",
    "mnist5k": "Semi-supervised mnist5k (4,500 / 500 test)",
    "generation": "Conditional generation",
}


#: The line :func:`semi_supervised` prints for every run (read back by ``--rows-from``).
RUN_LINE = re.compile(
    r"^\s*(?P<name>\S+) N=(?P<n>\d+) seed (?P<seed>\d+): M2 (?P<m2>[\d.]+), labelled only "
    r"(?P<baseline>[\d.]+), generative (?P<generative>[\d.]+) \((?P<epochs>\d+) epochs, "
    r"(?P<seconds>[\d.]+) s\)$")


def rows_from(logs: list[Path], name: str, alpha: float | None) -> dict[int, list[dict]]:
    """The runs of data set ``name`` that earlier runs of this script printed to ``logs``
    (several processes may share one part's seeds or N), by N and seed; a seed's later
    line (a later log: a rerun with another budget) replaces its earlier one."""
    if alpha is None:
        raise SystemExit("--rows-from needs the --alpha the runs were trained with")
    runs: dict[int, dict[int, dict[str, Any]]] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            m = RUN_LINE.match(line)
            if m and m["name"] == name:
                runs.setdefault(int(m["n"]), {})[int(m["seed"])] = (
                    {k: float(m[k]) for k in ("m2", "baseline", "generative", "seconds")}
                    | {"epochs": int(m["epochs"]), "alpha": alpha})
    if not runs:
        raise SystemExit(f"no run of {name} in {', '.join(map(str, logs))}")
    return {n: [by_seed[s] for s in sorted(by_seed)] for n, by_seed in sorted(runs.items())}


def seeds(args: argparse.Namespace) -> range:
    return range(args.first_seed, args.first_seed + args.seeds)


def run_part(part: str, args: argparse.Namespace) -> str:
    """Measure one part (or read its runs back from ``--rows-from``); its Markdown table."""
    if args.rows_from and part in ("fashion", "mnist5k"):
        return semi_table(rows_from(args.rows_from, DATA[part], args.alpha))
    if part == "fashion":
        ds = load_dataset("fashion-mnist")
        return semi_table({n: [semi_supervised(ds, "fashion-mnist", n, s, 10_000, args)
                               for s in seeds(args)]
                           for n in map(int, args.labels.split(","))})
    if part == "mnist5k":
        ds = load_dataset("mnist5k")
        return semi_table({100: [semi_supervised(ds, "mnist5k", 100, s, 0, args)
                                 for s in seeds(args)]})
    gen = [generation(load_dataset(n), n, args) for n in args.generation_data.split(",")]
    return generation_table(gen, args)


def markers(part: str) -> tuple[str, str]:
    return f"<!-- labels:{part}:begin -->", f"<!-- labels:{part}:end -->"


def write_part(path: Path, part: str, body: str) -> None:
    """Put one part's text between its markers, making the section's frame if it is absent."""
    text = path.read_text() if path.exists() else ""
    if BEGIN not in text:
        frame = "\n\n".join("\n".join(markers(p)) for p in PARTS)
        write_block(path, BEGIN, END, frame, heading=HEADING)
    write_block(path, *markers(part), body)


if __name__ == "__main__":
    main()
