"""The disentanglement benchmark: six objectives on dSprites under a fixed CPU budget per run.

Models (Locatello et al. 2019's six, with the issue's settings): ``vae`` (the ELBO),
``beta-vae`` (β = 4), ``beta-tcvae`` (β = 6, minibatch-stratified), ``factorvae``
(γ = 35, the paper's discriminator), ``dip-vae-i`` (λ_od = 10, λ_d = 100) and
``capacity`` (C rising to 25 nats, γ = 1000). Every run: ``dsprites`` (663,552
training images), Chen et al.'s MLP by default (4096-1200-1200-10 and back, a
Bernoulli likelihood), D = 10, batch 64, Adam at 1e-3, one torch thread; training
stops at the first step after ``--budget`` minutes of this process's CPU time (a
callback raises; the weights reached are kept). Then, on the mean codes of
``--eval-rows`` rows drawn with the seed from all 737,280 (training and test rows),
MIG, DCI, SAP and the FactorVAE score (:func:`varfam.evaluation.factors.factor_scores`,
disentanglement_lib's protocol with ``--metric-train`` / ``--metric-test`` points), and
the ELBO on the first ``--test-rows`` test images. ``--curve-every`` adds MIG on a fixed
5,000 rows during training (its CPU time is not charged to the budget).

Runs are split over ``--jobs`` processes; each run is one JSON line appended to
``--lines``. ``--merge`` reads the lines (the last of each model and seed), prints the
table and, with ``--doc``, writes it into ``docs/disentanglement.md`` between
``<!-- disentanglement:begin -->`` and ``<!-- disentanglement:end -->``::

    python benchmarks/disentanglement.py --seeds 3 --budget 20 --jobs 2 \\
        --lines disentanglement.jsonl                         # the issue's protocol
    python benchmarks/disentanglement.py --merge --lines disentanglement.jsonl --doc
    python benchmarks/disentanglement.py --models vae,beta-tcvae --seeds 1 --budget 0.5 \\
        --hidden 512,256 --eval-rows 20000 --metric-train 1000 --metric-test 500 \\
        --lines short.jsonl                                   # a few minutes of CPU
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- disentanglement:begin -->", "<!-- disentanglement:end -->"

#: name → (objective, its options): the six models.
MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "vae": ("elbo", {}),
    "beta-vae": ("elbo", {"beta": 4.0}),
    "beta-tcvae": ("betatc", {"beta": 6.0}),
    "factorvae": ("factorvae", {"gamma": 35.0}),
    "dip-vae-i": ("dip", {"kind": "i", "lambda_od": 10.0}),
    "capacity": ("capacity", {"capacity": 25.0, "gamma": 1000.0}),
}
#: Seeds of each model in the full run: 3 for the three the issue compares, 1 otherwise.
FULL_SEEDS = {"vae": 3, "beta-tcvae": 3, "factorvae": 3}


class OutOfBudget(Exception):
    """Raised by :class:`CpuBudget` from inside the training loop."""


def make_budget(budget_s: float, curve_every: float | None, curve_fn: Any) -> Any:
    """A callback that stops training after ``budget_s`` CPU seconds of this process and
    records ``curve_fn()`` every ``curve_every`` CPU seconds (time spent in it is not
    charged)."""
    from varfam.training import Callback

    class CpuBudget(Callback):
        def __init__(self) -> None:
            self.start = time.process_time()
            self.excluded = 0.0
            self.next_point = curve_every
            self.curve: list[tuple[float, float]] = []
            self.steps = 0

        def used(self) -> float:
            return time.process_time() - self.start - self.excluded

        def on_train_start(self, run: Any) -> None:
            self.start, self.excluded = time.process_time(), 0.0

        def on_step_end(self, state: Any) -> None:
            self.steps = state.step
            used = self.used()
            if self.next_point is not None and used >= self.next_point:
                t = time.process_time()
                self.curve.append((round(used, 1), round(curve_fn(), 4)))
                self.excluded += time.process_time() - t
                self.next_point += curve_every
            if used >= budget_s:
                raise OutOfBudget

    return CpuBudget()


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """Train one model with one seed and score it; the JSON line."""
    import numpy as np
    import torch

    import varfam
    from varfam.data import load_dataset
    from varfam.evaluation.bounds import evaluate_elbo
    from varfam.evaluation.disentanglement import mig
    from varfam.evaluation.factors import factor_rows, factor_scores, mean_codes

    torch.set_num_threads(task["threads"])
    name, seed = task["model"], task["seed"]
    objective, options = MODELS[name]
    options = dict(options)
    if name == "capacity":
        options["capacity_epochs"] = task["capacity_epochs"]
    data = load_dataset("dsprites")
    torch.manual_seed(seed)
    model = varfam.VAE.build(data_shape=tuple(data.data_shape), arch=task["arch"],
                             hidden=tuple(task["hidden"]), latent_dim=task["latent_dim"],
                             likelihood="bernoulli")
    (x_curve, f_curve, _), = factor_rows(data)[:1]  # the training rows
    curve_rows = np.sort(np.random.default_rng(seed).choice(len(x_curve), 5000, replace=False))
    f_curve = f_curve[torch.as_tensor(curve_rows)].double().numpy()

    def curve_mig() -> float:
        return mig(mean_codes(model, x_curve, curve_rows), f_curve)["mig"]

    budget = make_budget(60.0 * task["budget"], task["curve_every"] and 60.0 * task["curve_every"],
                         curve_mig)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        varfam.train(model, data, epochs=10_000, eval_every=10_000, batch_size=task["batch_size"],
                     lr=task["lr"], seed=seed, precision=task["precision"], objective=objective,
                     objective_options=options, callbacks=[budget])
    except OutOfBudget:
        pass
    train_wall, train_cpu = time.perf_counter() - wall0, budget.used()
    model.eval()
    t = time.perf_counter()
    test = evaluate_elbo(model, data.test[: task["test_rows"]])
    scores = factor_scores(model, data, rows=task["eval_rows"], seed=seed,
                           num_train=task["metric_train"], num_test=task["metric_test"])
    n_train = len(data.train)
    return {
        "model": name, "seed": seed, "objective": objective, "options": options,
        "arch": task["arch"], "hidden": list(task["hidden"]), "latent_dim": task["latent_dim"],
        "batch_size": task["batch_size"], "lr": task["lr"], "threads": task["threads"],
        "precision": task["precision"],
        "budget_cpu_s": 60.0 * task["budget"], "train_cpu_s": round(train_cpu, 1),
        "train_wall_s": round(train_wall, 1), "setup_and_overhead_cpu_s":
            round(time.process_time() - cpu0 - train_cpu, 1),
        "steps": budget.steps, "epochs": round(budget.steps * task["batch_size"] / n_train, 4),
        "test_elbo": test["elbo"], "test_rows": task["test_rows"],
        "eval_rows": scores["factor_rows"], "metric_train": task["metric_train"],
        "metric_test": task["metric_test"], "eval_seconds": round(time.perf_counter() - t, 1),
        **{k: v for k, v in scores.items() if k not in ("factor_rows", "factor_seconds")},
        "curve": budget.curve, "host": platform.node(), "torch": torch.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


# ---------------------------------------------------------------- the table
def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % Student-t interval (nan for one value)."""
    from scipy.stats import t

    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, math.nan
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return m, float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def cell(values: list[float], digits: int = 3) -> str:
    m, h = interval(values)
    return f"{m:.{digits}f}" if math.isnan(h) else f"{m:.{digits}f} ± {h:.{digits}f}"


COLUMNS = (("MIG", "mig", 3), ("DCI dis.", "dci_disentanglement", 3),
           ("DCI compl.", "dci_completeness", 3), ("DCI inf.", "dci_informativeness", 3),
           ("SAP", "sap", 3), ("FactorVAE", "factor_vae_score", 3),
           ("test ELBO", "test_elbo", 1), ("CPU s", "train_cpu_s", 0), ("epochs", "epochs", 3))


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The lines of ``path``, the last one of each (model, seed)."""
    last: dict[tuple[str, int], dict[str, Any]] = {}
    for text in path.read_text().splitlines():
        if text.strip():
            r = json.loads(text)
            last[(r["model"], r["seed"])] = r
    return list(last.values())


def table(lines: list[dict[str, Any]]) -> str:
    """The Markdown table: one row per model, mean ± 95 % interval over its seeds."""
    head = "| model | seeds | " + " | ".join(c for c, _, _ in COLUMNS) + " |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name in MODELS:
        mine = [r for r in lines if r["model"] == name]
        if mine:
            rows.append(f"| {name} | {len(mine)} | " + " | ".join(
                cell([float(r[k]) for r in mine], d) for _, k, d in COLUMNS) + " |")
    return "\n".join(rows)


def settings(lines: list[dict[str, Any]]) -> str:
    r = lines[0]
    return (f"Measured {min(x['time'] for x in lines)} to {max(x['time'] for x in lines)} on "
            f"{r['host']} (torch {r['torch']}, {r['threads']} thread per run): {r['arch']} "
            f"{'-'.join(map(str, r['hidden']))}, D = {r['latent_dim']}, batch "
            f"{r['batch_size']}, lr {r['lr']}, {r.get('precision', 'fp32')} training, a budget "
            f"of {r['budget_cpu_s']:.0f} CPU s per run; metrics on the mean codes of "
            f"{r['eval_rows']:,} rows with "
            f"{r['metric_train']:,} / {r['metric_test']:,} training / test points; test "
            f"ELBO (nats) on the first {r['test_rows']:,} test images.")


def curves(lines: list[dict[str, Any]]) -> str:
    out = []
    for r in sorted(lines, key=lambda r: (list(MODELS).index(r["model"]), r["seed"])):
        if r.get("curve"):
            points = ", ".join(f"{s:.0f} s: {m:.3f}" for s, m in r["curve"])
            out.append(f"- {r['model']} seed {r['seed']}: {points}")
    return ("MIG on 5,000 training rows during training (CPU seconds: MIG):\n\n"
            + "\n".join(out)) if out else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated, of {','.join(MODELS)} (default all)")
    p.add_argument("--seeds", type=int, help="seeds per model (default: 3 for vae, "
                   "beta-tcvae and factorvae, 1 for the others)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--budget", type=float, default=20.0, help="CPU minutes per run (default 20)")
    p.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="training precision (default fp32; bf16 takes more steps per CPU second "
                        "where the CPU has fast bf16 products)")
    p.add_argument("--arch", default="mlp")
    p.add_argument("--hidden", default="1200,1200",
                   help="hidden widths (default Chen et al.'s 1200,1200)")
    p.add_argument("--latent-dim", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--capacity-epochs", type=float, default=0.25,
                   help="epochs over which capacity's C rises (default 0.25: about what 20 "
                        "CPU minutes of the default MLP train)")
    p.add_argument("--eval-rows", type=int, default=100_000)
    p.add_argument("--metric-train", type=int, default=10_000)
    p.add_argument("--metric-test", type=int, default=5_000)
    p.add_argument("--test-rows", type=int, default=10_000)
    p.add_argument("--curve-every", type=float, default=None, metavar="MIN",
                   help="MIG on 5,000 rows every MIN CPU minutes of training")
    p.add_argument("--lines", type=Path, default=Path("disentanglement.jsonl"))
    p.add_argument("--merge", action="store_true", help="only read --lines and print the table")
    p.add_argument("--doc", action="store_true", help="write the table into "
                   "docs/disentanglement.md")
    p.add_argument("--note", default="", help="a sentence written above the table")
    args = p.parse_args(argv)
    if not args.merge:
        names = [m.strip() for m in args.models.split(",")]
        unknown = [m for m in names if m not in MODELS]
        if unknown:
            p.error(f"unknown model {unknown[0]}; choose from {','.join(MODELS)}")
        base = {k: getattr(args, k) for k in (
            "budget", "threads", "precision", "arch", "latent_dim", "batch_size", "lr",
            "capacity_epochs", "eval_rows", "metric_train", "metric_test", "test_rows",
            "curve_every")}
        base["hidden"] = [int(h) for h in args.hidden.split(",")]
        tasks = [{**base, "model": m, "seed": args.first_seed + s}
                 for s in range(max(FULL_SEEDS.values()) if args.seeds is None else args.seeds)
                 for m in names if args.seeds is not None or s < FULL_SEEDS.get(m, 1)]
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.jobs, maxtasksperchild=1) as pool:
            for line in pool.imap_unordered(run_one, tasks):
                with args.lines.open("a") as f:
                    f.write(json.dumps(line) + "\n")
                print(f"{line['model']} seed {line['seed']}: MIG {line['mig']:.3f}, "
                      f"{line['steps']} steps in {line['train_cpu_s']:.0f} CPU s",
                      file=sys.stderr, flush=True)
    lines = read_lines(args.lines)
    body = "\n\n".join(x for x in (args.note, settings(lines), table(lines), curves(lines)) if x)
    print(body)
    if args.doc:
        sys.path.insert(0, str(Path(__file__).parent))
        from _doc_block import write_block

        write_block(ROOT / "docs" / "disentanglement.md", BEGIN, END, body,
                    heading="## Results", title="# Disentanglement\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
