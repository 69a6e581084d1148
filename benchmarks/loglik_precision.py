"""Importance-sampled log p(x) with the decoder in bf16: its speed and its bias against fp32.

    python benchmarks/loglik_precision.py            # K = 1000 and K = 10 on 1,000 test
                                                     # images (a few minutes), rewrites its
                                                     # block of docs/performance.md
    python benchmarks/loglik_precision.py --quick --no-doc   # a short check, printed

The model is the textbook one (784-400-20 MLP, diagonal Gaussian, Bernoulli on the
grey levels) trained with varfam's defaults for ``--epochs`` epochs on Fashion-MNIST.
Three estimates of the same 1,000 test images run in alternating rounds (each side's
best round is compared):

- varfam, fp32 (the default);
- varfam, ``precision="bf16"`` (``varfam eval --iw-precision bf16``): the decoder's
  networks under bf16 autocast; the draws, q(z|x), p(z) and the Bernoulli log-density
  stay in fp32;
- one image at a time, the image repeated K times through the encoder and the decoder
  in fp32, the way pythae's ``get_nll`` does it (``speed.per_example_log_likelihood``).

The bias of bf16 is the mean paired difference bf16 − fp32 over the images, both with
the same seed: the encoder runs in fp32 in both, so the draws are the same and the
difference is the decoder's rounding alone. For scale, the same table gives the
difference between two fp32 estimates with different seeds (the estimator's own noise).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch
from _doc_block import write_block
from speed import DECODE_FLOP, ENCODE_FLOP, cpu_name, per_example_log_likelihood

import varfam
from varfam.evaluation.bounds import importance_sampled_log_likelihood
from varfam.parts import bf16_supported

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- loglik_precision.py: begin -->", "<!-- loglik_precision.py: end -->"


def paired(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Mean of ``a - b`` and its standard error, nats."""
    d = (a.double() - b.double())
    return float(d.mean()), float(d.std() / math.sqrt(len(d)))


def measure(model: varfam.VAE, x: torch.Tensor, k: int, rounds: int, say) -> dict:
    """The three estimates in alternating rounds: best seconds, the estimates of round 0."""
    sides = {
        "fp32": lambda seed: importance_sampled_log_likelihood(model, x, k, seed=seed),
        "bf16": lambda seed: importance_sampled_log_likelihood(model, x, k, seed=seed,
                                                               precision="bf16"),
        "per_example": lambda seed: _seeded(per_example_log_likelihood, model, x, k, seed),
    }
    best = dict.fromkeys(sides, math.inf)
    first: dict[str, torch.Tensor] = {}
    keys = list(sides)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            t0 = time.perf_counter()
            est = sides[key](0)
            best[key] = min(best[key], time.perf_counter() - t0)
            first.setdefault(key, est)
        say(f"   K={k} round {r + 1}: " + ", ".join(f"{key} {best[key]:.2f} s" for key in keys))
    other_seed = sides["fp32"](1)
    bias, bias_se = paired(first["bf16"], first["fp32"])
    noise, noise_se = paired(other_seed, first["fp32"])
    loop, loop_se = paired(first["per_example"], first["fp32"])
    n = len(x)
    flop = n * (ENCODE_FLOP + k * DECODE_FLOP)
    return {"k": k, "n": n, "seconds": best, "mean": {key: float(v.mean()) for key, v in
                                                       first.items()},
            "bias": bias, "bias_se": bias_se, "bias_max": float(
                (first["bf16"] - first["fp32"]).abs().max()),
            "seed_noise": noise, "seed_noise_se": noise_se, "loop_diff": loop,
            "loop_diff_se": loop_se, "gflops": {key: flop / best[key] / 1e9 for key in
                                                ("fp32", "bf16")}}


def _seeded(fn, model, x, k, seed):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return fn(model, x, k)


def render(r: dict) -> str:
    lines = ["", f"Measured by `python benchmarks/loglik_precision.py"
             f"{' --quick' if r['quick'] else ''}` on {r['machine']}, torch "
             f"{torch.__version__}, {r['threads']} threads, fast bf16: "
             f"{'yes' if r['fast_bf16'] else 'no'}, {time.strftime('%Y-%m-%d')}; load average "
             f"(1 min) {r['load'][0]:.1f} at the start, {r['load'][1]:.1f} at the end. Model: "
             f"784-400-20 MLP, diagonal Gaussian, Bernoulli, trained {r['epochs']} epochs on "
             f"fashion-mnist with varfam's defaults (test ELBO {r['elbo']:.2f}); "
             f"{r['rows'][0]['n']:,} test images; best of {r['rounds']} alternating rounds.", "",
             "| K | varfam fp32 (s) | varfam bf16 decoder (s) | per-example loop, fp32 (s) | "
             "fp32 speed-up over the loop | bf16 speed-up over the loop | bf16 over fp32 | "
             "bias bf16 − fp32 (nats) ± s.e. | largest per-image difference | two fp32 seeds "
             "differ by | mean log p(x), fp32 |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        s = row["seconds"]
        lines.append(
            f"| {row['k']} | {s['fp32']:.2f} | {s['bf16']:.2f} | {s['per_example']:.2f} | "
            f"{s['per_example'] / s['fp32']:.1f}× | {s['per_example'] / s['bf16']:.1f}× | "
            f"{s['fp32'] / s['bf16']:.2f}× | {row['bias']:+.4f} ± {row['bias_se']:.4f} | "
            f"{row['bias_max']:.3f} | {row['seed_noise']:+.3f} ± {row['seed_noise_se']:.3f} | "
            f"{row['mean']['fp32']:.2f} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 images, one round, 2 epochs")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave the doc alone")
    ap.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    say = lambda *a: print(*a, flush=True)  # noqa: E731
    epochs, rounds = (2, 1) if args.quick else (args.epochs, args.rounds)
    r = {"quick": args.quick, "threads": torch.get_num_threads(), "epochs": epochs,
         "rounds": rounds, "machine": f"{cpu_name()} ({os.cpu_count()} logical CPUs)",
         "fast_bf16": bf16_supported(torch.device("cpu")), "load": [os.getloadavg()[0], 0.0]}
    data = varfam.load_dataset("fashion-mnist")
    if args.quick:
        data = data.limit(10_000, 1_000)
    torch.manual_seed(0)
    model = varfam.VAE.for_data(data)
    say(f"training {epochs} epochs on {data.name}")
    varfam.train(model, data, epochs=epochs, seed=0)
    model = model.cpu().eval()
    x = data.test[: 100 if args.quick else 1000]
    r["elbo"] = float(varfam.evaluation.bounds.evaluate_elbo(model, data.test)["elbo"])
    r["rows"] = [measure(model, x, k, rounds, say) for k in (1000, 10)]
    r["load"][1] = os.getloadavg()[0]
    block = render(r)
    print(block)
    if not args.no_doc:
        write_block(DOC, BEGIN, END, block, heading="### Importance sampling with a bf16 decoder")
        say(f"wrote {DOC}")


if __name__ == "__main__":
    main()
