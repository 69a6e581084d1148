"""How fast varfam trains and evaluates, measured side by side with the textbook way.

    python benchmarks/speed.py            # the full measurement (about 15 minutes on two
                                          # idle cores), rewrites the measured part of
                                          # docs/performance.md
    python benchmarks/speed.py --threads 1   # the same on a machine shared with other
                                          # busy processes
    python benchmarks/speed.py --quick    # a short end-to-end check (a few minutes)
    python benchmarks/speed.py --only profile,families --no-doc   # some sections, printed

Every ratio is measured side by side in this one process: the two sides run in
alternating rounds (an epoch, or one whole estimate, each) and each side's best round
is compared, so that the CPU's speed drifting over minutes (20-40 % on a shared
machine) does not decide a ratio. The machine's load average is recorded with the
numbers.

Sections (all on the CPU, with torch's default thread count unless stated):

1. ``peak``: fp32 and bf16 GFLOP/s of a large and of the model's own product;
2. ``training``: Fashion-MNIST (60k), 784-400-20 MLP, batch 128: the reference program
   written plainly in the style of the classic PyTorch VAE example (DataLoader over a
   per-example Dataset, sigmoid + summed BCE, fp32 Adam), ``varfam.train`` with its
   defaults, and a hand-written tensor loop with every lever and no distributions (in
   the precision varfam's default picks on this machine), with the three test ELBOs;
3. ``profile``: where one training step's time goes (``torch.profiler``), varfam's
   default step beside the hand-written loop's;
4. ``levers``: varfam's loop with each of its levers switched off alone;
5. ``loglik``: importance-sampled log-likelihood (K = 1000 and K = 10 on 1,000 test
   images) against a per-example loop, with the arithmetic rate it reaches;
6. ``families``: every registered family's training rate relative to ``diagonal``.

Peak memory, through the command line and through Python, is measured by
``benchmarks/memory.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _doc_block import write_block
from PIL import Image
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

import varfam
from varfam import VAE
from varfam.data import Dataset
from varfam.evaluation.bounds import evaluate_elbo, importance_sampled_log_likelihood
from varfam.parts import use_bf16
from varfam.registry import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- speed.py: begin -->", "<!-- speed.py: end -->"
SECTIONS = ("peak", "training", "profile", "levers", "loglik", "families")

#: multiply-adds of one example's forward pass through 784-400-(20+20)-400-784
LAYERS = [(784, 400), (400, 20), (400, 20), (20, 400), (400, 784)]
FLOP_PER_EXAMPLE = 3 * 2 * sum(a * b for a, b in LAYERS)  # forward + backward (2x forward)
#: FLOP of decoding one latent (20-400-784) and of encoding one image (784-400-(20+20))
DECODE_FLOP = 2 * (20 * 400 + 400 * 784)
ENCODE_FLOP = 2 * (784 * 400 + 400 * 40)
#: the default precision on this machine: bf16 autocast where the CPU has fast bf16
BF16 = use_bf16("auto", torch.device("cpu"))
PRECISION = "bf16" if BF16 else "fp32"


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


def _test_elbo_of(model: TextbookVAE, test_x: torch.Tensor) -> float:
    """The test ELBO of the textbook network, computed as varfam computes its own."""
    vae = VAE.build(data_shape=(1, 28, 28))
    names = {"fc1": "encoder.net.0", "fc21": "family.loc", "fc22": "family.log_var",
             "fc3": "decoder.net.0", "fc4": "decoder.net.2"}
    state = {f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v
             for k, v in model.state_dict().items()}
    vae.load_state_dict(state)
    torch.manual_seed(0)
    return evaluate_elbo(vae, test_x)["elbo"]


class TextbookRun:
    """The classic example's program, one epoch per :meth:`epoch` (its state kept)."""

    name = "textbook (DataLoader, per-example Dataset, fp32)"

    def __init__(self, train_u8: np.ndarray, test_u8: np.ndarray, seed: int) -> None:
        torch.manual_seed(seed)
        self.n = len(train_u8)
        self.model = TextbookVAE()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.train_loader = DataLoader(_PerExample(train_u8), batch_size=128, shuffle=True)
        self.test_loader = DataLoader(_PerExample(test_u8), batch_size=128, shuffle=False)

    def epoch(self) -> float:
        self.model.train()
        t0 = time.perf_counter()
        for data, _ in self.train_loader:
            self.optimizer.zero_grad()
            recon_batch, mu, logvar = self.model(data)
            loss = textbook_loss(recon_batch, data, mu, logvar)
            loss.backward()
            self.optimizer.step()
        return time.perf_counter() - t0

    def test_elbo(self) -> float:
        self.model.eval()
        test_loss, n = 0.0, 0
        with torch.no_grad():
            for data, _ in self.test_loader:
                recon_batch, mu, logvar = self.model(data)
                test_loss += textbook_loss(recon_batch, data, mu, logvar).item()
                n += len(data)
        return -test_loss / n


class TensorLoopRun:
    """A hand-written loop over one tensor: logits loss, fused Adam, no distributions, in
    ``PRECISION`` (bf16 autocast where varfam's default uses it), one epoch per call."""

    name = f"hand-written tensor loop, {PRECISION}, fused Adam (no distributions)"

    def __init__(self, train_x: torch.Tensor, test_x: torch.Tensor, seed: int) -> None:
        torch.manual_seed(seed)
        self.model = TextbookVAE()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, fused=True)
        self.x_all, self.test_x = train_x.reshape(-1, 784), test_x
        self.n = len(self.x_all)

    def step(self, x: torch.Tensor) -> None:
        model = self.model
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
            mu, logvar = model.encode(x)
            z = model.reparameterize(mu.float(), logvar.float())
            logits = model.fc4(F.relu(model.fc3(z)))
        rec = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar.float() - mu.float().pow(2) - logvar.float().exp())
        loss = (rec + kld) / len(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def epoch(self) -> float:
        t0 = time.perf_counter()
        perm = torch.randperm(self.n)
        for i in range(0, self.n, 128):
            self.step(self.x_all[perm[i : i + 128]])
        return time.perf_counter() - t0

    def test_elbo(self) -> float:
        return _test_elbo_of(self.model, self.test_x)


class VarfamRun:
    """``varfam.train`` with its defaults, one more epoch per call (resumed from the run
    folder's checkpoint, so the rounds train exactly as one uninterrupted run)."""

    name = f"varfam.train (default: {PRECISION})"

    def __init__(self, data: Dataset, seed: int, folder: Path, **options) -> None:
        torch.manual_seed(seed)
        self.data, self.seed, self.folder = data, seed, folder
        self.n = len(data.train)
        self.model = VAE.build(**options.pop("model", {"data_shape": (1, 28, 28)}))
        self.options, self.done = options, 0
        self.last: dict = {}

    def epoch(self) -> float:
        self.done += 1
        result = varfam.train(self.model, self.data, epochs=self.done, seed=self.seed,
                              out=self.folder, resume=self.done > 1,
                              **self.options)
        self.last = result.history[-1]
        return self.last["epoch_seconds"]

    def test_elbo(self) -> float:
        return self.last["test_elbo"]


def alternate(runs: dict, rounds: int, say=None) -> dict:
    """One epoch of each run in turn, ``rounds`` times (each round starting one run later,
    so that no run always follows the same one): each run's best and mean examples/s."""
    seconds = defaultdict(list)
    keys = list(runs)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            seconds[key].append(runs[key].epoch())
        if say:
            say(f"   round {r + 1}: " + ", ".join(
                f"{k} {runs[k].n / seconds[k][-1]:,.0f} ex/s" for k in keys))
    return {k: {"rate": runs[k].n / min(v), "mean_rate": runs[k].n * len(v) / sum(v)}
            for k, v in seconds.items()}


# ---------------------------------------------------------------- 3. profile
#: how the profiled ops are grouped, by the outermost aten op an op runs inside (first
#: match wins); the optimizer's ops and the Bernoulli density's backward by their caller
_GROUPS = (
    ("matrix products", ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear",
                         "aten::matmul")),
    ("Bernoulli log-density (BCE with logits)", ("aten::binary_cross_entropy",)),
    ("batch gathering", ("aten::index_select", "aten::index", "aten::randperm")),
)
#: the ops of a fused Adam step (``torch.optim.Adam.step`` wraps them in a record of its own)
_OPTIMIZER_OPS = ("aten::_fused_adam_", "aten::_foreach_add_")
PROFILE_ROWS = ("matrix products", "Bernoulli log-density (BCE with logits)",
                "other tensor ops (elementwise, reductions, copies)", "optimizer (Adam, zero_grad)",
                "batch gathering", "autograd engine (outside ops)",
                "Python outside ops (distributions, modules, the loop)", "total")


def _group(event) -> tuple[str, bool]:
    """(group, whether the event is an outermost aten op: one the Python code or the
    autograd engine called, counted in the op counts)."""
    chain, parent = [], event
    while parent is not None:
        chain.append(parent.name)
        parent = parent.cpu_parent
    atens = [n for n in chain if n.startswith("aten::")]
    top = len(atens) == 1 and chain[0] == atens[0]  # an aten op inside no other aten op
    if any(n.startswith("Optimizer.") for n in chain) or (
            atens and atens[-1] in _OPTIMIZER_OPS):  # varfam calls Adam's kernel directly
        return "optimizer (Adam, zero_grad)", top
    if not atens:
        return "autograd engine (outside ops)", False
    outermost = atens[-1]
    if any("BinaryCrossEntropy" in n for n in chain):
        return "Bernoulli log-density (BCE with logits)", top
    for group, prefixes in _GROUPS:
        if any(outermost.startswith(k) for k in prefixes):
            return group, top
    return "other tensor ops (elementwise, reductions, copies)", top


def _profiled(fn, steps: int) -> dict[str, dict[str, float]]:
    """``fn()`` (``steps`` steps) under ``torch.profiler``: wall-clock ms per step by group
    ('Python outside ops' is the rest), outermost aten ops per step by group, and the
    process's CPU ms per step."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ms: dict[str, float] = defaultdict(float)
    ops: dict[str, float] = defaultdict(float)
    for e in prof.events():
        group, top = _group(e)
        ms[group] += e.self_cpu_time_total / 1e3 / steps
        ops[group] += top / steps
    ms["Python outside ops (distributions, modules, the loop)"] = max(
        0.0, 1e3 * wall / steps - sum(ms.values()))
    ms["total"] = 1e3 * wall / steps
    ops["total"] = sum(ops.values())
    return {"ms": dict(ms), "ops": dict(ops), "cpu_ms": 1e3 * cpu / steps}


def profile_steps(data: Dataset, steps: int, rounds: int = 3) -> dict:
    """Where a training step's time goes: varfam's default step and the hand-written one,
    ``steps`` steps each (after a warm-up epoch), in ``rounds`` alternating rounds; each
    side's round with the least CPU time is kept."""
    small = data.limit(steps * 128, 500)
    vt = importlib.import_module("varfam.training.loop")
    hand = TensorLoopRun(small.train, small.test, seed=0)
    hand.epoch()
    model = VAE.build(data_shape=(1, 28, 28))
    varfam.train(model, small, epochs=1)  # warm-up
    tables: dict[str, list] = {"hand": [], "varfam": []}
    run_epoch = vt.run_epoch

    def patched(loop, state):
        result = []
        tables["varfam"].append(
            _profiled(lambda: result.append(run_epoch(loop, state)), steps))
        return result[0]

    for _ in range(rounds):
        vt.run_epoch = patched
        try:
            varfam.train(model, small, epochs=1)
        finally:
            vt.run_epoch = run_epoch
        tables["hand"].append(_profiled(hand.epoch, steps))
    return {k: min(v, key=lambda t: t["cpu_ms"]) for k, v in tables.items()}


# ---------------------------------------------------------------- per-example reference
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


# ---------------------------------------------------------------- 4. levers
@contextlib.contextmanager
def lever_off(name: str):
    """Switch one of the training loop's levers off (by patching the module)."""
    import varfam.training.loop as vt

    saved = {k: getattr(vt, k) for k in ("_adam", "_no_distribution_validation", "CHECK_EVERY")}
    threads = torch.get_num_threads()
    try:
        if name == "fused Adam":
            vt._adam = lambda model, lr: torch.optim.Adam(model.parameters(), lr=lr)
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


class LeverOffRun(VarfamRun):
    """A :class:`VarfamRun` with one lever switched off during its epochs."""

    def __init__(self, lever: str, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lever = lever

    def epoch(self) -> float:
        with lever_off(self.lever):
            return super().epoch()


def lever_rates(data: Dataset, rounds: int, folder: Path, say) -> list[dict]:
    levers = (["bf16 autocast"] if BF16 else []) + [
        "fused Adam", "no distribution validation", "no per-step sync"] + (
        ["all threads"] if torch.get_num_threads() > 1 else [])
    rows = []
    for i, lever in enumerate(levers):
        extra = {"precision": "fp32"} if lever == "bf16 autocast" else {}
        runs = {"on": VarfamRun(data, 0, folder / f"on{i}"),
                "off": LeverOffRun(lever, data, 0, folder / f"off{i}", **extra)}
        rates = alternate(runs, rounds)
        rows.append({"lever": lever, "rate": rates["off"]["rate"], "base": rates["on"]["rate"]})
        say(f"   off: {lever:28s} {rates['off']['rate']:,.0f} ex/s "
            f"(on: {rates['on']['rate']:,.0f})")
    return rows


# ---------------------------------------------------------------- 5. log-likelihood
def compare_log_likelihood(model: VAE, x: torch.Tensor, k: int, rounds: int) -> dict:
    """varfam's estimate and the per-example loop's, in alternating rounds (best of each)."""
    best = {"batched": math.inf, "single": math.inf}
    for r in range(rounds):
        torch.manual_seed(r)
        t0 = time.perf_counter()
        batched = importance_sampled_log_likelihood(model, x, k)
        best["batched"] = min(best["batched"], time.perf_counter() - t0)
        torch.manual_seed(100 + r)
        t0 = time.perf_counter()
        single = per_example_log_likelihood(model, x, k)
        best["single"] = min(best["single"], time.perf_counter() - t0)
    d = batched.double() - single
    n = len(x)
    return {"k": k, "n": n, "batched_s": best["batched"], "per_example_s": best["single"],
            "speedup": best["single"] / best["batched"], "batched_mean": float(batched.mean()),
            "per_example_mean": float(single.mean()), "diff": float(d.mean()),
            "diff_se": float(d.std() / math.sqrt(n)),
            "batched_gflops": n * (ENCODE_FLOP + k * DECODE_FLOP) / best["batched"] / 1e9,
            "single_gflops": n * k * (ENCODE_FLOP + DECODE_FLOP) / best["single"] / 1e9}


# ---------------------------------------------------------------- 6. families
def family_options(name: str) -> dict:
    import inspect

    target = FAMILIES.get(name)
    params = inspect.signature(target).parameters
    return {"flow_steps": 4} if "flow_steps" in params else {}


def family_rates(data: Dataset, rounds: int, folder: Path, say) -> list[dict]:
    """Each family against ``diagonal`` in alternating epochs (the same diagonal run goes on
    throughout); the slowdown is diagonal's best epoch over the family's in those rounds."""
    diag = VarfamRun(data, 0, folder / "diagonal")
    rows = [{"family": "diagonal", "options": {}, "prior": "standard", "rate": 0.0,
             "slowdown": 1.0}]
    for name in FAMILIES.names():
        if name == "diagonal":
            continue
        prior = getattr(FAMILIES.get(name), "default_prior", "standard")
        options = family_options(name)
        row = {"family": name, "options": options, "prior": prior}
        try:
            run = VarfamRun(data, 0, folder / name, model={
                "data_shape": (1, 28, 28), "family": name, "family_options": options,
                "prior": prior})
            rates = alternate({"diagonal": diag, name: run}, rounds)
            row.update(rate=rates[name]["rate"], test_elbo=run.test_elbo(),
                       slowdown=rates["diagonal"]["rate"] / rates[name]["rate"])
            rows[0]["rate"] = max(rows[0]["rate"], rates["diagonal"]["rate"])
            if "test_elbo" not in rows[0]:
                rows[0]["test_elbo"] = diag.test_elbo()
            say(f"   {name:14s} {row['rate']:8,.0f} ex/s {row['slowdown']:5.2f}x")
        except Exception as e:  # report it, keep measuring the others
            row["error"] = str(e).splitlines()[0][:120]
            say(f"   {name:14s} failed: {row['error']}")
        rows.append(row)
    return rows


# ---------------------------------------------------------------- the report
def fmt(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def render(r: dict) -> str:
    flag = (" --quick" if r["quick"] else "") + (
        f" --threads {r['threads']}" if r["threads_given"] else "")
    threads = f"{r['threads']} thread{'s' if r['threads'] != 1 else ''}"
    lines = ["", f"Measured by `python benchmarks/speed.py{flag}` on {r['machine']}, "
             f"torch {torch.__version__}, {threads}, default precision {PRECISION}, "
             f"{time.strftime('%Y-%m-%d')}; load average (1 min) {r['load'][0]:.1f} at "
             f"the start, {r['load'][1]:.1f} at the end (where other processes share the "
             "cores, absolute rates drop; the side-by-side ratios much less).", ""]
    p = r.get("peak")
    if p:
        lines += ["### Matrix-product peak", "",
                  "| product | fp32 GFLOP/s | bf16 GFLOP/s |", "|---|---:|---:|",
                  f"| 1024×1024×1024 | {fmt(p['fp32'])} | {fmt(p['bf16'])} |",
                  f"| 128×784×400 (the first layer) | {fmt(p['fp32_layer'])} | "
                  f"{fmt(p['bf16_layer'])} |",
                  f"| 2048×400×784 (a block of importance-sampling decoding) | "
                  f"{fmt(p['fp32_decode'])} | – |", ""]
    t = r.get("training")
    if t:
        lines += [f"### Training throughput ({t['data']}, {t['n']:,} examples, batch 128, "
                  f"best of {t['rounds']} alternating epochs)", "",
                  f"One step costs {FLOP_PER_EXAMPLE / 1e6:.2f} MFLOP per example (forward "
                  "and backward of 784-400-(20+20)-400-784). Mean rates over the rounds in "
                  "brackets; test ELBO after the rounds.", "",
                  "| loop | examples/s | × textbook | × hand-written | % of fp32 peak "
                  "| test ELBO (nats) |", "|---|---:|---:|---:|---:|---:|"]
        for key in ("textbook", "varfam", "tensor"):
            row = t["rows"][key]
            gflops = row["rate"] * FLOP_PER_EXAMPLE / 1e9
            lines.append(
                f"| {row['name']} | {fmt(row['rate'])} ({fmt(row['mean_rate'])}) | "
                f"{row['rate'] / t['rows']['textbook']['rate']:.2f} | "
                f"{row['rate'] / t['rows']['tensor']['rate']:.2f} | "
                f"{100 * gflops / p['fp32']:.0f} | {row['test_elbo']:.2f} |" if p else
                f"| {row['name']} | {fmt(row['rate'])} ({fmt(row['mean_rate'])}) | "
                f"{row['rate'] / t['rows']['textbook']['rate']:.2f} | "
                f"{row['rate'] / t['rows']['tensor']['rate']:.2f} | – | "
                f"{row['test_elbo']:.2f} |")
        lines += ["", "Test ELBO difference varfam − hand-written loop: "
                  f"{t['rows']['varfam']['test_elbo'] - t['rows']['tensor']['test_elbo']:+.2f} "
                  "nats; varfam − textbook: "
                  f"{t['rows']['varfam']['test_elbo'] - t['rows']['textbook']['test_elbo']:+.2f}"
                  " nats.", ""]
    prof = r.get("profile")
    if prof:
        hand, ours = prof["hand"], prof["varfam"]
        lines += [f"### Where a training step's time goes ({prof['steps']} steps of batch 128 "
                  "under `torch.profiler`; of 3 alternating rounds, each side's with the least "
                  "CPU time)", "",
                  "Wall-clock ms per step by part (the profiler's clock), and the aten ops "
                  "called per step (from Python or the autograd engine; deterministic).", "",
                  "| part of the step | hand-written loop ms | varfam ms | varfam − hand ms "
                  "| hand-written ops | varfam ops |", "|---|---:|---:|---:|---:|---:|"]
        for row in PROFILE_ROWS:
            a, b = hand["ms"].get(row, 0.0), ours["ms"].get(row, 0.0)
            na, nb = hand["ops"].get(row), ours["ops"].get(row)
            counts = f"{na:.0f} | {nb:.0f}" if na is not None or nb is not None else "– | –"
            counts = counts.replace("None", "0")
            bold = "**" if row == "total" else ""
            lines.append(f"| {bold}{row}{bold} | {a:.2f} | {b:.2f} | {b - a:+.2f} | {counts} |")
        lines += ["", f"CPU time per step (the process's, same runs): hand-written "
                  f"{hand['cpu_ms']:.2f} ms, varfam {ours['cpu_ms']:.2f} ms.", ""]
    if r.get("levers"):
        lines += ["### Levers of the training loop (each switched off alone, alternating with "
                  "the default)", "",
                  "| switched off | examples/s | default in the same rounds | change |",
                  "|---|---:|---:|---:|"]
        for row in r["levers"]:
            lines.append(f"| {row['lever']} | {fmt(row['rate'])} | {fmt(row['base'])} | "
                         f"{100 * (row['rate'] / row['base'] - 1):+.0f} % |")
        lines += [""]
    if r.get("loglik"):
        lines += ["### Importance-sampled log-likelihood (fp32, best of alternating rounds)", "",
                  "| K | images | varfam (s) | per-example loop (s) | speed-up | varfam GFLOP/s "
                  "(% of fp32 peak) | per-example GFLOP/s | mean log p(x) varfam | per-example "
                  "| difference ± s.e. |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for c in r["loglik"]:
            peak = f" ({100 * c['batched_gflops'] / p['fp32']:.0f} %)" if p else ""
            lines.append(
                f"| {c['k']} | {c['n']} | {c['batched_s']:.2f} | {c['per_example_s']:.2f} | "
                f"{c['speedup']:.1f}× | {c['batched_gflops']:.0f}{peak} | "
                f"{c['single_gflops']:.0f} | {c['batched_mean']:.2f} | "
                f"{c['per_example_mean']:.2f} | {c['diff']:+.3f} ± {c['diff_se']:.3f} |")
        lines += [""]
    if r.get("families"):
        lines += [f"### Training rate of every family ({r['families_data']})", "",
                  "| family | options | prior | examples/s | × slower than diagonal | test ELBO |",
                  "|---|---|---|---:|---:|---:|"]
        for row in r["families"]:
            opts = ", ".join(f"{k}={v}" for k, v in row["options"].items()) or "–"
            if "error" in row:
                lines.append(f"| {row['family']} | {opts} | {row['prior']} | failed: "
                             f"{row['error']} | | |")
            else:
                elbo = f"{row['test_elbo']:.2f}" if "test_elbo" in row else "–"
                lines.append(f"| {row['family']} | {opts} | {row['prior']} | "
                             f"{fmt(row['rate'])} | {row['slowdown']:.2f} | {elbo} |")
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
    ap.add_argument("--only", help=f"comma-separated sections of {','.join(SECTIONS)} "
                    "(printed only: the doc is rewritten by a full run)")
    ap.add_argument("--rounds", type=int, help="alternating training rounds (default 5; "
                    "quick 2)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per "
                    "core; 1 on a machine shared with other busy processes, where threads that "
                    "wait for a descheduled sibling make small ops many times slower)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    rounds = args.rounds or (2 if quick else 5)
    say = lambda *a: print(*a, flush=True)  # noqa: E731
    r: dict = {"quick": quick, "threads": torch.get_num_threads(),
               "threads_given": bool(args.threads),
               "machine": f"{cpu_name()} ({os.cpu_count()} logical CPUs)",
               "load": [os.getloadavg()[0], math.nan]}
    say(f"load average {r['load'][0]:.1f}; precision {PRECISION}")
    data = varfam.load_dataset("fashion-mnist")
    if quick:
        data = data.limit(10_000, 2_000)
    folder = Path(tempfile.mkdtemp(prefix="varfam-speed-"))

    if "peak" in only:
        say("1. matrix-product peak")
        r["peak"] = {"fp32": matmul_gflops(1024, 1024, 1024, torch.float32),
                     "bf16": matmul_gflops(1024, 1024, 1024, torch.bfloat16),
                     "fp32_layer": matmul_gflops(128, 784, 400, torch.float32),
                     "bf16_layer": matmul_gflops(128, 784, 400, torch.bfloat16),
                     "fp32_decode": matmul_gflops(2048, 400, 784, torch.float32)}
        say("  ", {k: round(v) for k, v in r["peak"].items()})

    model = None
    if "training" in only:
        say(f"2. training throughput ({rounds} alternating rounds)")
        train_u8 = (data.train.view(-1, 28, 28) * 255).round().to(torch.uint8).numpy()
        test_u8 = (data.test.view(-1, 28, 28) * 255).round().to(torch.uint8).numpy()
        runs = {"textbook": TextbookRun(train_u8, test_u8, 0),
                "varfam": VarfamRun(data, 0, folder / "training"),
                "tensor": TensorLoopRun(data.train, data.test, 0)}
        rates = alternate(runs, rounds, say)
        rows = {k: {**rates[k], "name": runs[k].name, "test_elbo": runs[k].test_elbo()}
                for k in runs}
        r["training"] = {"data": data.name, "n": len(data.train), "rounds": rounds,
                         "rows": rows}
        model = runs["varfam"].model
        say("   " + ", ".join(f"{k}: {v['rate']:,.0f} ex/s, test ELBO {v['test_elbo']:.2f}"
                              for k, v in rows.items()))

    if "profile" in only:
        say("3. profile of a training step")
        r["profile"] = {"steps": 20 if quick else 60, **profile_steps(data, 20 if quick else 60)}
        for row in PROFILE_ROWS:
            say(f"   {row:55s} hand {r['profile']['hand']['ms'].get(row, 0):7.3f} ms  "
                f"varfam {r['profile']['varfam']['ms'].get(row, 0):7.3f} ms")

    if "levers" in only:
        say("4. levers")
        r["levers"] = lever_rates(data.limit(5_000 if quick else 30_000), 2, folder, say)

    if "loglik" in only:
        say("5. importance-sampled log-likelihood")
        if model is None:
            model = VarfamRun(data.limit(10_000), 0, folder / "loglik").model
            varfam.train(model, data.limit(10_000), epochs=2)
        x = data.test[: 100 if quick else 1000]
        r["loglik"] = [compare_log_likelihood(model.cpu(), x, k, 2) for k in (1000, 10)]
        for c in r["loglik"]:
            say(f"   K={c['k']}: {c['speedup']:.1f}x ({c['batched_gflops']:.0f} GFLOP/s) "
                f"diff {c['diff']:+.3f} ± {c['diff_se']:.3f}")

    if "families" in only:
        say("6. families")
        fam_data = data.limit(5_000 if quick else 20_000)
        r["families_data"] = (f"{fam_data.name}, {len(fam_data.train):,} examples, best of 2 "
                              "epochs alternating with diagonal's")
        r["families"] = family_rates(fam_data, 2, folder, say)

    r["load"][1] = os.getloadavg()[0]
    block = render(r)
    print(block)
    if not args.no_doc and not args.only:
        write_block(DOC, BEGIN, END, block, title="# Performance\n")
        say(f"wrote {DOC}")


if __name__ == "__main__":
    main()
