"""How fast varfam trains and evaluates, measured side by side with the textbook way.

    python benchmarks/speed.py            # the full measurement (< 10 minutes), rewrites
                                          # the measured part of docs/performance.md
    python benchmarks/speed.py --quick    # a short end-to-end check (about a minute)

Sections (all on the CPU, with torch's default thread count unless stated):

1. matrix-product peak: fp32 and bf16 GFLOP/s of a large and of the model's own product;
2. training throughput on Fashion-MNIST (60k), 784-400-20 MLP, batch 128: the reference
   program written plainly in the style of the classic PyTorch VAE example
   (DataLoader over a per-example Dataset, sigmoid + summed BCE, fp32 Adam) against
   ``varfam.train`` for the same epochs, with both test ELBOs;
3. the levers of varfam's loop, each switched off alone;
4. importance-sampled log-likelihood (K = 1000 and K = 10 on 1,000 test images) against
   a per-example loop;
5. every registered family's training rate relative to ``diagonal``.

Peak memory, through the command line and through Python, is measured by
``benchmarks/memory.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _doc_block import write_block
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

import varfam
from varfam import VAE
from varfam.data import Dataset
from varfam.evaluate import importance_sampled_log_likelihood
from varfam.registry import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- speed.py: begin -->", "<!-- speed.py: end -->"

#: multiply-adds of one example's forward pass through 784-400-(20+20)-400-784
LAYERS = [(784, 400), (400, 20), (400, 20), (20, 400), (400, 784)]
FLOP_PER_EXAMPLE = 3 * 2 * sum(a * b for a, b in LAYERS)  # forward + backward (2x forward)


# ---------------------------------------------------------------- 1. peak
def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 1.0) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(5):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9


# ---------------------------------------------------------------- 2. the reference
class _PerExample(TorchDataset):
    """One uint8 image at a time, as torchvision's ``datasets.MNIST`` with ``ToTensor()``.

    The classic example's data path: ``__getitem__`` makes a PIL image of the
    28x28 bytes, and ``ToTensor`` turns it into a (1, 28, 28) float tensor / 255.
    (torchvision itself does not import beside this torch build; these lines are
    what its MNIST dataset and ToTensor do for a grey image.)
    """

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[i], mode="L")
        t = torch.from_numpy(np.array(img, np.uint8, copy=True))
        t = t.view(img.size[1], img.size[0], 1).permute((2, 0, 1)).contiguous()
        return t.to(dtype=torch.get_default_dtype()).div(255), 0


class TextbookVAE(nn.Module):
    """The classic PyTorch example's VAE: fc1, fc21/fc22, fc3, fc4 and a sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def textbook_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run_textbook(train_u8: np.ndarray, test_u8: np.ndarray, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = TextbookVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_loader = DataLoader(_PerExample(train_u8), batch_size=128, shuffle=True)
    test_loader = DataLoader(_PerExample(test_u8), batch_size=128, shuffle=False)
    seconds = 0.0
    for _ in range(epochs):
        model.train()
        t0 = time.perf_counter()
        for data, _ in train_loader:
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = textbook_loss(recon_batch, data, mu, logvar)
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - t0
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for data, _ in test_loader:
            recon_batch, mu, logvar = model(data)
            test_loss += textbook_loss(recon_batch, data, mu, logvar).item()
    return {"rate": epochs * len(train_u8) / seconds, "seconds": seconds,
            "test_elbo": -test_loss / len(test_u8)}


def run_tensor_loop(train_x: torch.Tensor, epochs: int, seed: int) -> float:
    """A hand-written loop over one tensor: logits loss, fused Adam, bf16 autocast."""
    torch.manual_seed(seed)
    model = TextbookVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x_all = train_x.view(-1, 784)
    n, seconds = len(x_all), 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        for i in range(0, n, 128):
            x = x_all[perm[i : i + 128]]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                mu, logvar = model.encode(x)
                z = model.reparameterize(mu.float(), logvar.float())
                logits = model.fc4(F.relu(model.fc3(z)))
            rec = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar.float() - mu.float().pow(2) - logvar.float().exp())
            loss = (rec + kld) / len(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds += time.perf_counter() - t0
    return epochs * n / seconds


def run_varfam(data: Dataset, epochs: int, seed: int, **options) -> dict:
    torch.manual_seed(seed)
    model = VAE.build(**options.pop("model", {}))
    result = varfam.train(model, data, epochs=epochs, seed=seed, **options)
    seconds = sum(r["epoch_seconds"] for r in result.history)
    best = max(r["samples_per_s"] for r in result.history)
    return {"rate": epochs * len(data.train) / seconds, "best_epoch_rate": best,
            "seconds": seconds, "test_elbo": result.history[-1]["test_elbo"],
            "model": result.model}


# ---------------------------------------------------------------- 3. levers
@contextlib.contextmanager
def lever_off(name: str):
    """Switch one of the training loop's levers off (by patching the module)."""
    import importlib

    vt = importlib.import_module("varfam.train")  # the module (varfam.train is the function)

    saved = {k: getattr(vt, k) for k in ("_adam", "_no_distribution_validation", "CHECK_EVERY")}
    threads = torch.get_num_threads()
    try:
        if name == "fused Adam":
            vt._adam = lambda model, lr, device: torch.optim.Adam(model.parameters(), lr=lr)
        elif name == "no distribution validation":
            vt._no_distribution_validation = contextlib.nullcontext
        elif name == "no per-step sync":
            vt.CHECK_EVERY = 1  # a host sync every step, like a per-step float(loss)
        elif name == "all threads":
            torch.set_num_threads(1)
        yield
    finally:
        for k, v in saved.items():
            setattr(vt, k, v)
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- 4. log-likelihood
@torch.inference_mode()
def per_example_log_likelihood(model: VAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """One image at a time, its K samples in one batch, the way pythae's ``get_nll`` does it.

    As in pythae, the image is repeated K times and the repeated batch goes
    through the encoder and the decoder; the K log-weights are combined with a
    log-sum-exp per image.
    """
    model.eval()
    prior = model.prior_distribution()
    out = torch.empty(len(x), dtype=torch.float64)
    for i in range(len(x)):
        x_rep = x[i : i + 1].expand(k, *x.shape[1:])
        q = model.encode(x_rep)
        z = q.sample()  # (K, D)
        log_w = model.decode(z).log_prob(x_rep) + prior.log_prob(z) - q.log_prob(z)  # (K,)
        out[i] = torch.logsumexp(log_w.double(), 0) - math.log(k)
    return out


def time_call(fn, *args, **kwargs):
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - t0


def compare_log_likelihood(model: VAE, x: torch.Tensor, k: int) -> dict:
    torch.manual_seed(0)
    batched, t_batched = time_call(importance_sampled_log_likelihood, model, x, k)
    torch.manual_seed(1)
    single, t_single = time_call(per_example_log_likelihood, model, x, k)
    d = batched.double() - single
    return {"k": k, "n": len(x), "batched_s": t_batched, "per_example_s": t_single,
            "speedup": t_single / t_batched, "batched_mean": float(batched.mean()),
            "per_example_mean": float(single.mean()), "diff": float(d.mean()),
            "diff_se": float(d.std() / math.sqrt(len(d)))}


# ---------------------------------------------------------------- 5. families
def family_options(name: str) -> dict:
    import inspect

    target = FAMILIES.get(name)
    params = inspect.signature(target).parameters
    return {"flow_steps": 4} if "flow_steps" in params else {}


def family_rates(data: Dataset, epochs: int) -> list[dict]:
    rows = []
    for name in FAMILIES.names():
        cls = FAMILIES.get(name)
        prior = getattr(cls, "default_prior", "standard")
        options = family_options(name)
        try:
            r = run_varfam(data, epochs, 0, model={"family": name, "family_options": options,
                                                   "prior": prior})
            rows.append({"family": name, "options": options, "prior": prior,
                         "rate": r["best_epoch_rate"], "test_elbo": r["test_elbo"]})
        except Exception as e:  # report it, keep measuring the others
            rows.append({"family": name, "options": options, "prior": prior,
                         "error": str(e).splitlines()[0][:120]})
    base = next((r["rate"] for r in rows if r["family"] == "diagonal" and "rate" in r), None)
    for r in rows:
        if "rate" in r and base:
            r["slowdown"] = base / r["rate"]
    return rows


# ---------------------------------------------------------------- the report
def fmt(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def render(r: dict) -> str:
    flag = " --quick" if r["quick"] else ""
    lines = ["", f"Measured by `python benchmarks/speed.py{flag}` on {r['machine']}, "
             f"torch {torch.__version__}, {r['threads']} threads, "
             f"{time.strftime('%Y-%m-%d')}.", ""]
    p = r["peak"]
    lines += ["### Matrix-product peak", "",
              "| product | fp32 GFLOP/s | bf16 GFLOP/s |", "|---|---:|---:|",
              f"| 1024×1024×1024 | {fmt(p['fp32'])} | {fmt(p['bf16'])} |",
              f"| 128×784×400 (the first layer) | {fmt(p['fp32_layer'])} | "
              f"{fmt(p['bf16_layer'])} |",
              ""]
    t = r["training"]
    lines += [f"### Training throughput ({t['data']}, {t['n']:,} examples, batch 128, "
              f"{t['epochs']} epochs)", "",
              f"One step costs {FLOP_PER_EXAMPLE / 1e6:.2f} MFLOP per example (forward and "
              "backward of 784-400-(20+20)-400-784).", "",
              "| loop | examples/s | × textbook | % of bf16 peak | % of fp32 peak "
              "| test ELBO (nats) |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, row in t["rows"]:
        frac = row["rate"] * FLOP_PER_EXAMPLE / 1e9
        elbo = f"{row['test_elbo']:.2f}" if "test_elbo" in row else "–"
        lines.append(f"| {name} | {fmt(row['rate'])} | {row['rate'] / t['textbook']:.2f} | "
                     f"{100 * frac / p['bf16']:.1f} | {100 * frac / p['fp32']:.1f} | {elbo} |")
    lines += ["", f"Test ELBO difference varfam − textbook: {t['elbo_diff']:+.2f} nats.", ""]
    lines += ["### Levers of the training loop (each switched off alone)", "",
              "| switched off | examples/s | change |", "|---|---:|---:|"]
    base = r["levers"][0]["rate"]
    for row in r["levers"]:
        lines.append(f"| {row['lever']} | {fmt(row['rate'])} | "
                     f"{100 * (row['rate'] / base - 1):+.0f} % |")
    lines += ["", "### Importance-sampled log-likelihood", "",
              "| K | images | varfam (s) | per-example loop (s) | speed-up | mean log p(x) varfam "
              "| per-example | difference ± s.e. |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in r["loglik"]:
        lines.append(f"| {c['k']} | {c['n']} | {c['batched_s']:.2f} | "
                     f"{c['per_example_s']:.2f} | {c['speedup']:.1f}× | {c['batched_mean']:.2f} | "
                     f"{c['per_example_mean']:.2f} | {c['diff']:+.3f} ± {c['diff_se']:.3f} |")
    lines += ["", f"### Training rate of every family ({r['families_data']})", "",
              "| family | options | prior | examples/s | × slower than diagonal | test ELBO |",
              "|---|---|---|---:|---:|---:|"]
    for row in r["families"]:
        opts = ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "–"
        if "error" in row:
            lines.append(f"| {row['family']} | {opts} | {row['prior']} | failed: {row['error']} |"
                         " | |")
        else:
            lines.append(f"| {row['family']} | {opts} | {row['prior']} | {fmt(row['rate'])} | "
                         f"{row['slowdown']:.2f} | {row['test_elbo']:.2f} |")
    lines += [""]
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a short end-to-end check")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave the doc alone")
    ap.add_argument("--epochs", type=int, help="training epochs (default 10; quick 1)")
    args = ap.parse_args()
    quick = args.quick
    epochs = args.epochs or (1 if quick else 10)
    say = lambda *a: print(*a, flush=True)  # noqa: E731
    r: dict = {"quick": quick, "threads": torch.get_num_threads(),
               "machine": f"{cpu_name()} ({os.cpu_count()} logical CPUs)"}

    say("1. matrix-product peak")
    r["peak"] = {"fp32": matmul_gflops(1024, 1024, 1024, torch.float32),
                 "bf16": matmul_gflops(1024, 1024, 1024, torch.bfloat16),
                 "fp32_layer": matmul_gflops(128, 784, 400, torch.float32),
                 "bf16_layer": matmul_gflops(128, 784, 400, torch.bfloat16)}
    say("  ", {k: round(v) for k, v in r["peak"].items()})

    say("2. training throughput")
    data = varfam.load_dataset("fashion-mnist")
    if quick:
        data = data.limit(10_000)
    train_u8 = (data.train.view(-1, 28, 28) * 255).round().to(torch.uint8).numpy()
    test_u8 = (data.test.view(-1, 28, 28) * 255).round().to(torch.uint8).numpy()
    textbook = run_textbook(train_u8, test_u8, epochs, seed=0)
    say(f"   textbook: {textbook['rate']:.0f} ex/s, test ELBO {textbook['test_elbo']:.2f}")
    ours = run_varfam(data, epochs, seed=0)
    say(f"   varfam:   {ours['rate']:.0f} ex/s, test ELBO {ours['test_elbo']:.2f}; "
        f"ratio {ours['rate'] / textbook['rate']:.2f}")
    tensor_rate = run_tensor_loop(data.train, max(1, epochs // 5), seed=0)
    say(f"   hand-written tensor loop: {tensor_rate:.0f} ex/s")
    r["training"] = {
        "data": data.name, "n": len(data.train), "epochs": epochs, "textbook": textbook["rate"],
        "elbo_diff": ours["test_elbo"] - textbook["test_elbo"],
        "rows": [("textbook (DataLoader, per-example Dataset, fp32)", textbook),
                 ("varfam.train (default: bf16 autocast)", ours),
                 ("hand-written tensor loop, bf16, fused Adam (no distributions)",
                  {"rate": tensor_rate})],
    }

    say("3. levers")
    lever_data = data if quick else data.limit(30_000)
    r["levers"] = []
    for lever in ("nothing", "bf16 autocast", "fused Adam", "no distribution validation",
                  "no per-step sync", "all threads"):
        with lever_off(lever):
            precision = "fp32" if lever == "bf16 autocast" else "auto"
            row = run_varfam(lever_data, 2, 0, precision=precision)
        r["levers"].append({"lever": lever, "rate": row["best_epoch_rate"]})
        say(f"   off: {lever:28s} {row['best_epoch_rate']:.0f} ex/s")

    say("4. importance-sampled log-likelihood")
    model = ours["model"].cpu()
    x = data.test[: 100 if quick else 1000]
    r["loglik"] = [compare_log_likelihood(model, x, k) for k in (1000, 10)]
    for c in r["loglik"]:
        say(f"   K={c['k']}: {c['speedup']:.1f}x  diff {c['diff']:+.3f} ± {c['diff_se']:.3f}")

    say("5. families")
    fam_data = data.limit(5_000 if quick else 20_000)
    r["families_data"] = f"{fam_data.name}, {len(fam_data.train):,} examples, best of 2 epochs"
    r["families"] = family_rates(fam_data, 2)
    for row in r["families"]:
        say(f"   {row['family']:12s} {row.get('rate', float('nan')):8.0f} ex/s "
            f"{row.get('slowdown', float('nan')):5.2f}x {row.get('error', '')}")

    block = render(r)
    print(block)
    if not args.no_doc:
        write_block(DOC, BEGIN, END, block, title="# Performance\n")
        say(f"wrote {DOC}")


if __name__ == "__main__":
    main()
