"""The families benchmark: every registered variational family, trained and measured alike.

For each dataset (default: ``fashion-mnist`` and ``mnist5k``, dynamically
binarized) this trains one VAE per family with the same networks, epochs and
seed through the ``varfam`` command line (``varfam train``), measures it with
``varfam eval --iw K`` and writes a table into ``docs/results.md`` between the
markers ``<!-- results:begin -->`` and ``<!-- results:end -->``: ELBO,
importance-sampled log p(x) ± standard error, inference gap, active units,
mutual information, probe accuracy and seconds per epoch. Two more rows per
dataset compare the IWAE objective (k = 50) and the VampPrior with the textbook
diagonal-Gaussian ELBO model.

Parts that are not registered when the benchmark runs (families, priors, the
iwae objective, datasets) are skipped with a note in the table, and a part that
fails to train is reported as such; the rest still runs.

    python benchmarks/families.py                         # the default (~30 min, 2 CPU cores)
    python benchmarks/families.py --datasets digits --epochs 1 --iw 10 \\
        --families diagonal,iaf --results /tmp/results.md    # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from _doc_block import write_block

from varfam.cli import main as varfam
from varfam.registry import DATASETS, FAMILIES, OBJECTIVES, PRIORS
from varfam.reporting.page import read_metrics

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
#: Epochs and evaluation subsets of the default run, chosen to fit ~30 min on 2 CPU cores.
DEFAULT_EPOCHS = {"fashion-mnist": 2, "mnist5k": 10}
DEFAULT_EVAL_LIMIT = {"fashion-mnist": 2000, "mnist5k": 500}
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Spec:
    """One model of the benchmark: a family with a prior and an objective."""

    label: str
    family: str
    prior: str = "standard"
    objective: str = "elbo"
    extra_args: list[str] = field(default_factory=list)

    def missing(self) -> str | None:
        """A note naming the part that is not registered, or ``None``."""
        for kind, name, registry in (("family", self.family, FAMILIES),
                                     ("prior", self.prior, PRIORS),
                                     ("objective", self.objective, OBJECTIVES)):
            if name not in registry:
                return f"skipped: {kind} '{name}' is not registered"
        return None


def specs(families: list[str], extras: bool) -> list[Spec]:
    out = []
    for name in families:
        prior = getattr(FAMILIES.get(name), "default_prior", "standard") if name in FAMILIES \
            else "standard"
        out.append(Spec(name, name, prior))
    if extras:
        out.append(Spec("diagonal + IWAE (k=50)", "diagonal", objective="iwae",
                        extra_args=["--k", "50"]))
        out.append(Spec("diagonal + VampPrior", "diagonal", prior="vamp"))
    return out


def _call(argv: list[str]) -> tuple[int, str]:
    """Run a varfam command in this process; (exit code, its standard output)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = varfam(argv)
    return code, buf.getvalue()


def _finished(run: Path, epochs: int) -> bool:
    done, _ = read_metrics(run)
    return (run / "model.safetensors").is_file() and bool(done) and done[-1]["epoch"] >= epochs


def run_one(spec: Spec, data: str, args: argparse.Namespace, epochs: int,
            eval_limit: int | None) -> dict[str, Any]:
    """Train and evaluate one model; a row of the results table (with a note on failure)."""
    row: dict[str, Any] = {"label": spec.label, "family": spec.family, "prior": spec.prior,
                           "objective": spec.objective, "note": spec.missing()}
    if row["note"]:
        return row
    slug = spec.label.replace(" ", "").replace("+", "-").replace("(", "-").replace(")", "") \
        .replace("=", "")
    run = Path(args.runs_dir) / data / slug
    t0 = time.perf_counter()
    try:
        if not (args.skip_existing and _finished(run, epochs)):
            argv = ["train", "--data", data, "--family", spec.family, "--prior", spec.prior,
                    "--objective", spec.objective, *spec.extra_args, "--epochs", str(epochs),
                    "--hidden", args.hidden, "--latent-dim", str(args.latent_dim),
                    "--binarize", "dynamic", "--seed", str(args.seed), "--batch-size",
                    str(args.batch_size), "--precision", args.precision, "--out", str(run),
                    "--quiet"]
            if args.limit:
                argv += ["--limit", str(args.limit)]
            code, _ = _call(argv)
            if code != 0:
                row["note"] = f"training failed (exit code {code})"
                return row
        train_s = time.perf_counter() - t0
        argv = ["eval", str(run), "--iw", str(args.iw), "--seed", str(args.seed), "--json"]
        if eval_limit:
            argv += ["--limit", str(eval_limit)]
        code, out = _call(argv)
        if code != 0:
            row["note"] = f"evaluation failed (exit code {code})"
            return row
    except Exception as e:  # a part under construction may still raise; keep benchmarking
        traceback.print_exc()
        row["note"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
        return row
    m = json.loads(out.strip().splitlines()[-1])
    epochs_logged, _ = read_metrics(run)
    secs = [r["epoch_seconds"] for r in epochs_logged if "epoch_seconds" in r]
    row.update(m)
    row.update(run=str(run), test_elbo=epochs_logged[-1]["test_elbo"] if epochs_logged else None,
               seconds_per_epoch=sum(secs) / len(secs) if secs else None,
               train_seconds=train_s, eval_seconds=m.get("seconds"))
    return row


def _f(v: Any, digits: int = 2, se: Any = None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    text = f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    if se is not None and isinstance(se, float) and math.isfinite(se):
        text += f" ± {se:.{digits}f}"
    return text


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| model | prior | test ELBO (full test set) | ELBO (eval subset) | log p(x) (IS) | "
            "gap | active units | MI (nats) | probe acc | s/epoch | eval s | note |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        au = f"{r['active_units']}/{r['latent_dim']}" if r.get("active_units") is not None else "–"
        lines.append(
            f"| {r['label']} | {r['prior']} | {_f(r.get('test_elbo'))} | "
            f"{_f(r.get('elbo'), se=r.get('elbo_se'))} | "
            f"{_f(r.get('log_likelihood'), se=r.get('log_likelihood_se'))} | "
            f"{_f(r.get('inference_gap'), se=r.get('inference_gap_se'))} | {au} | "
            f"{_f(r.get('mutual_information'))} | {_f(r.get('probe_accuracy'), 3)} | "
            f"{_f(r.get('seconds_per_epoch'), 1)} | {_f(r.get('eval_seconds'), 0)} | "
            f"{r.get('note') or ''} |"
        )
    return "\n".join(lines)


def comparisons(rows: list[dict[str, Any]]) -> list[str]:
    """Differences of the IWAE and VampPrior rows from the diagonal ELBO row."""
    base = next((r for r in rows if r["label"] == "diagonal" and r.get("log_likelihood")), None)
    out = []
    for r in rows:
        if r["label"].startswith("diagonal +") and base and r.get("log_likelihood") is not None:
            delta = r["log_likelihood"] - base["log_likelihood"]
            out.append(
                f"- {r['label']} vs diagonal ELBO: log p(x) {r['log_likelihood']:.2f} vs "
                f"{base['log_likelihood']:.2f} nats (Δ {delta:+.2f}), "
                f"active units {r['active_units']} vs {base['active_units']}, "
                f"gap {r['inference_gap']:.2f} vs {base['inference_gap']:.2f} nats."
            )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default="all",
                   help="comma-separated families, or 'all' registered ones (default)")
    p.add_argument("--datasets", default="fashion-mnist,mnist5k")
    p.add_argument("--epochs", type=int, help="epochs for every dataset "
                   f"(default: {DEFAULT_EPOCHS}, 5 for others)")
    p.add_argument("--iw", type=int, default=1000, help="importance samples K (default 1000)")
    p.add_argument("--eval-limit", type=int, help="evaluate the first N test images "
                   f"(default: {DEFAULT_EVAL_LIMIT}, all for others)")
    p.add_argument("--limit", type=int, help="train on the first N training images only")
    p.add_argument("--hidden", default="200", help="encoder/decoder widths (default 200)")
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="fp32", choices=["auto", "bf16", "fp32"])
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's; 1 is faster on a busy machine)")
    p.add_argument("--no-extras", action="store_true", help="skip the IWAE and VampPrior rows")
    p.add_argument("--extras-on", default="mnist5k",
                   help="datasets that get the IWAE and VampPrior rows (default mnist5k)")
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "bench-families"))
    p.add_argument("--results", default=str(ROOT / "docs" / "results.md"))
    p.add_argument("--skip-existing", action="store_true",
                   help="reuse runs that already finished their epochs (evaluate again)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    families = FAMILIES.names() if args.families == "all" else args.families.split(",")
    extras_on = set(args.extras_on.split(","))
    sections = []
    for data in args.datasets.split(","):
        epochs = args.epochs or DEFAULT_EPOCHS.get(data, 5)
        eval_limit = args.eval_limit or DEFAULT_EVAL_LIMIT.get(data)
        if data not in DATASETS:
            sections.append(f"### {data}\n\nskipped: dataset '{data}' is not registered.\n")
            continue
        rows = []
        for spec in specs(families, extras=not args.no_extras and data in extras_on):
            print(f"[{time.perf_counter() - t0:7.0f} s] {data}: {spec.label}", file=sys.stderr)
            rows.append(run_one(spec, data, args, epochs, eval_limit))
        subset = f"the first {eval_limit}" if eval_limit else "all the"
        sections.append(
            f"### {data}\n\n{epochs} epoch{'s' if epochs > 1 else ''}, dynamically binarized; "
            f"ELBO, log p(x), gap, active units, MI and probe on {subset} test images, "
            f"K = {args.iw}.\n\n{table(rows)}\n\n" + "\n".join(comparisons(rows))
        )
    wall = time.perf_counter() - t0
    settings = (
        f"Generated by `python benchmarks/families.py {' '.join(argv or sys.argv[1:])}` on "
        f"{time.strftime('%Y-%m-%d')}: MLP {args.hidden} hidden units, D = {args.latent_dim}, "
        f"batch {args.batch_size}, Adam 1e-3, seed {args.seed}, {args.precision}, "
        f"torch {torch.__version__} on {platform.machine()} with {os.cpu_count()} CPU cores "
        f"({torch.get_num_threads()} threads)"
        f"{', CUDA GPU' if torch.cuda.is_available() else ''}. "
        f"**Total wall time {wall / 60:.1f} min.**"
    )
    write_block(Path(args.results), BEGIN, END,
                (settings + "\n\n" + "\n\n".join(sections)).rstrip(), title="# Results\n")
    print(f"wrote {args.results} in {wall:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
