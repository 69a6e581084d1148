"""What ``--compile`` (``TrainConfig.compile``, ``torch.compile`` of the training step) buys.

    python benchmarks/compile_speed.py            # measure, write docs/performance.md
    python benchmarks/compile_speed.py --no-doc   # print only

For each model the same training step (bf16 autocast where the CPU has fast bf16,
loss, backward, fused Adam) is timed eagerly, compiled, and compiled with
``max-autotune``, on random binary batches of 128 Fashion-MNIST-sized images,
after warm-up steps; the compilation time is the wall time of the first
compiled step. The step is built by
``varfam.training.step.loss_function``, exactly as ``varfam train`` builds it.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from _doc_block import write_block
from torch.distributions import Distribution

from varfam import VAE, __version__
from varfam.parts import bf16_supported
from varfam.registry import OBJECTIVES
from varfam.training.step import loss_function

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- compile_speed.py: begin -->", "<!-- compile_speed.py: end -->"
CPU = torch.device("cpu")

MODELS = [
    ("textbook: mlp 400, D=20, diagonal, standard, elbo",
     dict(arch="mlp", hidden=(400,), latent_dim=20), "elbo", {}),
    ("record: gated-mlp 300,300, D=40, diagonal, vamp(100), iwae(k=5, dreg)",
     dict(arch="gated-mlp", hidden=(300, 300), latent_dim=40, prior="vamp",
          prior_options={"components": 100}), "iwae", {"k": 5, "estimator": "dreg"}),
    ("HVAE: gated-mlp 300,300, D=40+40, hierarchical, vamp(100) on top, iwae(k=5, dreg)",
     dict(arch="gated-mlp", hidden=(300, 300), latent_dim=80, family="hierarchical",
          family_options={"top": 40}, prior="hierarchical",
          prior_options={"top": 40, "top_prior": "vamp", "top_prior_options": {"components": 100}}),
     "iwae", {"k": 5, "estimator": "dreg"}),
    ("record + autoregressive-bernoulli (7×7 window, 8 units), iwae(k=5, dreg)",
     dict(arch="gated-mlp", hidden=(300, 300), latent_dim=40, prior="vamp",
          prior_options={"components": 100}, likelihood="autoregressive-bernoulli",
          likelihood_options={"kernel": 7, "width": 8}),
     "iwae", {"k": 5, "estimator": "dreg"}),
    ("gated-mlp 300,300, D=40, iaf, standard, elbo",
     dict(arch="gated-mlp", hidden=(300, 300), latent_dim=40, family="iaf"), "elbo", {}),
]


def step_times(model: VAE, objective_name: str, options: dict, compile: str | None,
               batch: int, steps: int, bf16: bool) -> tuple[float, float]:
    """(seconds of the first step, median seconds per step after warm-up)."""
    objective = OBJECTIVES.build(objective_name, options=options)
    loss_of = loss_function(model, objective, None, CPU, bf16, compile)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    x = torch.bernoulli(torch.full((batch, 1, 28, 28), 0.3))

    def step() -> None:
        loss = loss_of(x, 1.0, 0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(10):
        step()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - t0) / steps)
    return first, statistics.median(times)


#: (column key, compile mode passed to ``loss_function``)
MODES = [("eager", None), ("compiled", "default"), ("autotuned", "max-autotune")]


def measure(batch: int, steps: int) -> list[dict]:
    bf16 = bf16_supported(CPU)
    rows = []
    for label, arch, objective, options in MODELS:
        row = {"model": label}
        for key, mode in MODES:
            torch._dynamo.reset()
            torch.manual_seed(0)
            model = VAE.build(data_shape=(1, 28, 28), **arch)
            first, per_step = step_times(model, objective, options, mode, batch, steps, bf16)
            row[key] = per_step
            row[key + "_first"] = first
        rows.append(row)
        print(f"{label}: " + ", ".join(f"{k} {row[k] * 1e3:.2f} ms" for k, _ in MODES)
              + f"; compile {row['compiled_first']:.1f} s, autotune {row['autotuned_first']:.1f} s",
              flush=True)
    return rows


def render(rows: list[dict], batch: int) -> str:
    lines = [
        f"Measured by `python benchmarks/compile_speed.py` on {time.strftime('%Y-%m-%d')}: "
        f"varfam {__version__}, torch {torch.__version__}, {platform.machine()} with "
        f"{torch.get_num_threads()} threads, batch {batch}, "
        f"{'bf16 autocast' if bf16_supported(CPU) else 'fp32'}. Median time of one training "
        "step (loss, backward, Adam) after warm-up: eager, `--compile`, and `--compile "
        "--compile-mode max-autotune`; first step = wall time of the first compiled step "
        "(compilation, and for max-autotune the kernel timings), which is much shorter on a "
        "repeat: torch keeps compiled kernels and tuning results in an on-disk cache "
        "(`/tmp/torchinductor_$USER`), warm here for models trained earlier.",
        "",
        "| model | eager (ms/step) | compiled (ms/step) | max-autotune (ms/step) | speed-up "
        "compiled | speed-up max-autotune | examples/s max-autotune | first step compiled / "
        "max-autotune (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['eager'] * 1e3:.2f} | {r['compiled'] * 1e3:.2f} | "
            f"{r['autotuned'] * 1e3:.2f} | {r['eager'] / r['compiled']:.2f}× | "
            f"{r['eager'] / r['autotuned']:.2f}× | {batch / r['autotuned']:,.0f} | "
            f"{r['compiled_first']:.1f} / {r['autotuned_first']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30, help="steps per timing (5 timings)")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave the doc alone")
    args = ap.parse_args()
    Distribution.set_default_validate_args(False)  # as inside varfam.train
    block = render(measure(args.batch, args.steps), args.batch)
    print(block)
    if not args.no_doc:
        write_block(DOC, BEGIN, END, block, heading="## Compiled training steps")
        print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
