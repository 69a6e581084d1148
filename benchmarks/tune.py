"""Tuning benchmark: TPE with pruning against random search at a fixed wall-clock budget.

On Fashion-MNIST (dynamically binarized), each repeat runs two studies of the same
search space around the same base config, each for the same wall budget:

- ``tpe+median``: Optuna's TPE sampler with the median pruner (``varfam.tune``'s
  defaults; ``--startup-trials`` random trials first);
- ``random``: random search, no pruning.

Both use the sampler seed of the repeat. A study starts no trial after its budget (the
last one may run past it; the seconds used are recorded). For each study the best trial
by validation ELBO so far is followed through time; the table reports, at fractions of
the budget, the best validation ELBO and the test ELBO of that trial (at its best epoch),
mean ± standard deviation over the repeats, beside the base config trained alone
("default").

The full benchmark is the worked example of docs/tuning.md: ``configs/tune-base.toml``
(the textbook 784-400-20 model on 10,000 images, 1,000 held out) and
``configs/tune-space.toml``, 30 minutes per study, 3 repeats: about 3.5 hours of a
2-core CPU. ``--quick`` shrinks it to minutes: 3,000 images (500 held out, 1,000 test),
4 epochs per trial, a smaller space (learning rate, latent size, width, batch size,
KL warm-up) and the given ``--budget``.

    python benchmarks/tune.py                                  # the full run (~3.5 h)
    python benchmarks/tune.py --quick --budget 1 --repeats 3   # ~7 min
    python benchmarks/tune.py --render                          # only rewrite the table

Results are appended to ``--out`` (JSON lines) and rendered into ``docs/tuning.md``
between ``<!-- tune:begin -->`` and ``<!-- tune:end -->``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _doc_block import write_block

import varfam
from varfam.config import RunConfig
from varfam.integrations.search_space import SearchSpace
from varfam.integrations.tune import CLOCKS

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = (0.1, 0.25, 0.5, 1.0)

QUICK_BASE = {
    "model": {"arch": "mlp", "hidden": [200], "latent_dim": 10, "family": "diagonal",
              "likelihood": "bernoulli"},
    "data": {"source": "fashion-mnist", "limit": 3000, "test_limit": 1000},
    "train": {"binarize": "dynamic", "validation": 500, "epochs": 4, "batch_size": 128,
              "lr": 1e-3, "seed": 0},
}
QUICK_SPACE = {
    "model": {"latent_dim": {"low": 4, "high": 32, "step": 4},
              "hidden": [[100], [200], [400]]},
    "train": {"lr": {"low": 1e-4, "high": 1e-2, "log": True},
              "batch_size": [32, 64, 128],
              "objective_options": {"warmup_epochs": {"low": 0.0, "high": 2.0}}},
}
STUDIES = {"tpe+median": ("tpe", "median"), "random": ("random", "none")}


def _setup(args: argparse.Namespace) -> tuple[RunConfig, SearchSpace]:
    if args.quick:
        base = RunConfig.from_dict(QUICK_BASE)
        return base, SearchSpace.from_dict(QUICK_SPACE, base)
    base = RunConfig.from_toml(ROOT / "configs" / "tune-base.toml")
    return base, SearchSpace.read(ROOT / "configs" / "tune-space.toml", base)


class CpuTimeline:
    """This process's CPU time against wall time, read twice a second by a thread, so that a
    trial's wall-clock completion time converts to the CPU seconds spent until then."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = [(time.time(), time.process_time())]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stop.wait(0.5):
            self.points.append((time.time(), time.process_time()))

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.points.append((time.time(), time.process_time()))

    def cpu_at(self, wall: float) -> float:
        walls, cpus = zip(*self.points, strict=True)
        return float(np.interp(wall, walls, cpus))


def _curve(study: Any, elapsed: Any) -> list[dict[str, Any]]:
    """The complete trials in the order they finished: the budget's seconds spent until
    then (``elapsed`` of the wall-clock completion time), values."""
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    return sorted(({"seconds": elapsed(t.datetime_complete.timestamp()), "trial": t.number,
                    "validation_elbo": t.value, "test_elbo": t.user_attrs.get("test_elbo"),
                    "params": t.params}
                   for t in done), key=lambda r: r["seconds"])


def run_study(method: str, seed: int, base: RunConfig, space: SearchSpace,
              args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    sampler, pruner = STUDIES[method]
    started, cpu0 = time.time(), time.process_time()
    timeline = CpuTimeline()
    try:
        study = varfam.tune(base, space, n_trials=10_000, time_limit=args.budget,
                            time_clock=args.clock, out=folder / f"{method}-{seed}",
                            sampler=sampler, pruner=pruner, startup_trials=args.startup_trials,
                            seed=seed)
    finally:
        timeline.close()
    states = [t.state.name.lower() for t in study.trials]
    return {"kind": "study", "method": method, "seed": seed, "budget_min": args.budget,
            "seconds": time.time() - started, "cpu_seconds": time.process_time() - cpu0,
            "curve": _curve(study, (lambda w: timeline.cpu_at(w) - cpu0) if args.clock == "cpu"
                            else (lambda w: w - started)),
            "trials": {s: states.count(s) for s in set(states)}}


def run_default(base: RunConfig, folder: Path) -> dict[str, Any]:
    """The base config trained alone: its best validation ELBO and that epoch's test ELBO."""
    t0 = time.time()
    result = varfam.train_from_config(base, out=folder / "default")
    s = result.state
    best = next(r for r in s.history if r["epoch"] == s.best_epoch)
    return {"kind": "default", "seconds": time.time() - t0,
            "validation_elbo": s.best_validation, "test_elbo": best["test_elbo"]}


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    base, space = _setup(args)
    folder = Path(tempfile.mkdtemp(prefix="tune-bench-"))
    context = {"quick": args.quick, "threads": args.threads, "machine": platform.node(),
               "date": time.strftime("%Y-%m-%d"), "startup_trials": args.startup_trials,
               "base": base.to_dict(), "space": space.describe(), "budget_min": args.budget,
               "clock": args.clock}

    def keep(record: dict[str, Any]) -> None:  # one line as soon as it is measured
        with args.out.open("a") as f:
            f.write(json.dumps({**record, **context}) + "\n")
        print(json.dumps({k: v for k, v in record.items() if k != "curve"}), flush=True)

    try:
        if not args.skip_default:
            keep(run_default(base, folder))
        for seed in range(args.first_seed, args.first_seed + args.repeats):
            order = list(args.methods) if seed % 2 == 0 else list(args.methods)[::-1]
            for method in order:  # alternate the order of the searches
                keep(run_study(method, seed, base, space, args, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _best_at(curve: list[dict[str, Any]], seconds: float) -> tuple[float, float] | None:
    seen = [r for r in curve if r["seconds"] <= seconds]
    if not seen:
        return None
    top = max(seen, key=lambda r: r["validation_elbo"])
    return top["validation_elbo"], top["test_elbo"]


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    a = np.array(values)
    return f"{a.mean():.2f} ± {a.std():.2f}" if len(a) > 1 else f"{a[0]:.2f}"


def render(path: Path, doc: Path) -> None:
    records = [json.loads(line) for line in path.open()] if path.exists() else []
    if not records:
        return
    date = records[-1]["date"]
    last = records[-1]
    run = [r for r in records if r["date"] == date and r["quick"] == last["quick"]
           and r.get("budget_min") == last.get("budget_min")
           and r.get("clock", "wall") == last.get("clock", "wall")]
    studies = [r for r in run if r["kind"] == "study"]
    default = [r for r in run if r["kind"] == "default"]
    budget = studies[0]["budget_min"]
    unit = "CPU min" if last.get("clock") == "cpu" else "min"
    lines = ["| search | budget | best validation ELBO | its test ELBO | complete / pruned "
             "trials |", "|---|---|---|---|---|"]
    for method in STUDIES:
        rows = [r for r in studies if r["method"] == method]
        for f in FRACTIONS:
            best = [b for r in rows if (b := _best_at(r["curve"], 60 * budget * f))]
            counts = [(r["trials"].get("complete", 0), r["trials"].get("pruned", 0))
                      for r in rows]
            trials = (f"{np.mean([c for c, _ in counts]):.1f} / "
                      f"{np.mean([p for _, p in counts]):.1f}") if f == 1.0 else ""
            lines.append(f"| {method} | {budget * f:g} {unit} | {_fmt([b[0] for b in best])} | "
                         f"{_fmt([b[1] for b in best])} | {trials} |")
    for d in default:
        lines.append(f"| default config | one run ({d['seconds']:.0f} s) | "
                     f"{d['validation_elbo']:.2f} | {d['test_elbo']:.2f} | |")
    used = max(r["seconds"] for r in studies) / 60
    seeds = sorted({r["seed"] for r in studies})
    cpu = [r["cpu_seconds"] / 60 for r in studies if "cpu_seconds" in r]
    ctx = run[-1]
    note = (f"\n\nMeasured {date} on {ctx['machine']} ({ctx['threads']} torch thread(s), "
            f"a shared 2-core CPU), {len(seeds)} repeats (sampler seeds "
            f"{', '.join(map(str, seeds))}), nats per image, higher is better; "
            f"± is the standard deviation over the repeats. "
            + ("The budget counts the CPU time of the study's process (`--clock cpu`), so "
               "that the studies, run side by side, get the same work done whatever else "
               "the machine runs. " if unit == "CPU min" else "")
            + f"A study took up to {used:.1f} min of wall time (the last trial runs past the "
            f"budget)"
            + (f" and {min(cpu):.1f} to {max(cpu):.1f} CPU minutes of its process" if cpu
               else "") + ". "
            + ("Quick run (`--quick`): 3,000 Fashion-MNIST images (500 validation, 1,000 "
               "test), 4 epochs per trial, the space of `QUICK_SPACE` in the script, "
               f"TPE's first {ctx['startup_trials']} trials random."
               if ctx["quick"] else "Full run: configs/tune-base.toml and tune-space.toml."))
    write_block(doc, "<!-- tune:begin -->", "<!-- tune:end -->", "\n".join(lines) + note)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="minutes instead of hours")
    p.add_argument("--budget", type=float, default=30.0, help="minutes per study (default 30)")
    p.add_argument("--clock", choices=CLOCKS, default="wall",
                   help="what the budget counts: wall time (default), or cpu: the CPU time of "
                        "the study's process, which other work on a shared machine does not "
                        "eat into (the curves then follow CPU time)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--startup-trials", type=int, default=None,
                   help="random trials before TPE and the median pruner start (default: "
                        "Optuna's, 10 and 5)")
    p.add_argument("--first-seed", type=int, default=0, help="the first repeat's sampler seed")
    p.add_argument("--methods", default=",".join(STUDIES),
                   help="the searches to run (default: both); run one per process to split a "
                        "benchmark over processes that share the CPU alike, then --render")
    p.add_argument("--skip-default", action="store_true",
                   help="do not train the base config alone (another process does)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "tune_benchmark.jsonl")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "tuning.md")
    p.add_argument("--render", action="store_true", help="only rewrite the table")
    args = p.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    if unknown := [m for m in args.methods if m not in STUDIES]:
        p.error(f"unknown method(s) {unknown}; choose from {list(STUDIES)}")
    if not args.render:
        run(args)
    render(args.out, args.doc)


if __name__ == "__main__":
    main()
