"""The training loop: batches gathered from one array, bf16 autocast, checkpoints, exact resume.

Read top to bottom: :func:`train` resolves the config, joins the process group
when started by torchrun, builds the batch sources, the objective and the
optimizer, restores a checkpoint if asked, then runs epochs. Every epoch draws
its permutation from a generator seeded by ``(seed, epoch)`` and re-seeds torch
from ``(seed, epoch, rank)``, so an epoch depends only on the weights and
optimizer state it starts from: resuming at an epoch boundary, or in mid-epoch
from the state saved on SIGINT/SIGTERM, gives the same final weights as an
uninterrupted run.

The hot loop does no host-device synchronization: losses are written into a
per-epoch tensor and inspected every :data:`CHECK_EVERY` steps (and at the end
of the epoch) for a non-finite value; the first one is reported with its epoch
and step. ``skip_nonfinite=True`` instead checks every step and skips such
batches (they are counted in ``metrics.jsonl``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
from torch.distributions import Distribution
from tqdm.auto import tqdm

from . import distributed as dist
from .averaging import WeightAverage
from .batches import BatchSource, float_chunks, is_file_backed
from .checkpoint import (
    CHECKPOINT,
    RunLock,
    load_checkpoint,
    save_checkpoint,
    save_model,
    write_text_atomic,
)
from .config import TrainConfig
from .data import Dataset
from .errors import VarfamError
from .evaluate import evaluate_elbo
from .precision import autocast, resolve_device, use_bf16
from .registry import OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover
    from .model import VAE
    from .objectives import Objective

__all__ = [
    "train",
    "TrainResult",
    "TrainingInterrupted",
    "binarize_fixed",
    "derived_seed",
    "METRICS",
    "CHECK_EVERY",
]

METRICS = "metrics.jsonl"

#: Steps between the checks for a non-finite loss (and, under torchrun, for a stop signal).
CHECK_EVERY = 50

_EVAL_CHUNK = 10_000


@dataclass
class TrainResult:
    """The trained model, one metrics dict per epoch, and the run folder (if any)."""

    model: VAE
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None


class TrainingInterrupted(VarfamError):
    """Training stopped on SIGINT (exit code 130) or SIGTERM (143) after saving its state."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def binarize_fixed(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Bernoulli-sample grey levels once with a fixed seed (static binarization, test sets)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.bernoulli(x.cpu(), generator=g).to(x.device)


def derived_seed(seed: int, *stream: int) -> int:
    """A 63-bit seed for ``(seed, *stream)``, e.g. an epoch's permutation or a rank's noise."""
    digest = hashlib.blake2b(repr((seed, *stream)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class _StopRequest(contextlib.AbstractContextManager):
    """SIGINT and SIGTERM set ``signum``; the loop saves and stops at the next step boundary.

    A second Ctrl-C more than a second after the first raises KeyboardInterrupt at
    once (sooner, it is the same keypress forwarded by torchrun). Handlers are
    installed only in the main thread and restored on exit.
    """

    def __init__(self) -> None:
        self.signum = 0
        self._first = 0.0
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            if time.monotonic() - self._first > 1.0:
                raise KeyboardInterrupt
            return
        if not self.signum:
            self.signum, self._first = signum, time.monotonic()

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _no_distribution_validation() -> Iterator[None]:
    """Skip torch.distributions' argument checks (a host sync each) while training."""
    old = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        Distribution.set_default_validate_args(old)


def train(
    model: VAE,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    **overrides: Any,
) -> TrainResult:
    """Train ``model`` on ``data.train``, evaluating the test ELBO after every epoch.

    Options are the fields of :class:`TrainConfig` (``epochs``, ``batch_size``,
    ``lr``, ``objective``, ``objective_options``, ``binarize``, ``precision``,
    ``seed``, ``device``, ``skip_nonfinite`` …), given as ``config`` and/or
    keywords. With ``out`` the run folder receives ``config.json``,
    ``metrics.jsonl``, ``model.safetensors`` and ``checkpoint.safetensors`` after
    every epoch (the folder is locked against a second training meanwhile);
    ``resume=True`` continues from that checkpoint exactly. SIGINT/SIGTERM save
    the state reached and raise :class:`TrainingInterrupted`.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the model trains with
    DistributedDataParallel; ``batch_size`` is the global batch, split across
    ranks, and only rank 0 evaluates and writes files (see
    :mod:`varfam.distributed`). ``data.train`` may be a tensor, a NumPy array or
    a memory-mapped array (read batch by batch when large, see
    :mod:`varfam.batches`).
    """
    base = dataclasses.asdict(config) if config is not None else {}
    cfg = TrainConfig(**{**base, **overrides})
    device = resolve_device(cfg.device)
    ctx = dist.setup(device)
    device = dist.local_device(ctx, device)
    run_dir = Path(out) if out is not None else None
    try:
        lock = RunLock(run_dir) if run_dir is not None and ctx.is_main else None
        with lock or contextlib.nullcontext(), _StopRequest() as stop:
            with _no_distribution_validation():
                result = _train(model, data, cfg, device, ctx, run_dir, resume, progress, stop)
    except BaseException:
        dist.teardown(ctx, together=False)  # other ranks may be gone: no barrier
        raise
    dist.teardown(ctx, together=True)
    return result


def _train(
    model: VAE,
    data: Dataset,
    cfg: TrainConfig,
    device: torch.device,
    ctx: dist.Context,
    run_dir: Path | None,
    resume: bool,
    progress: bool,
    stop: _StopRequest,
) -> TrainResult:
    bf16 = use_bf16(cfg.precision, device)
    static = cfg.binarize != "none"
    train_x, val_x = _hold_out(data.train, cfg.validation)
    _check_data(model, train_x)
    train_src = BatchSource(
        train_x, device, binarize_seed=cfg.seed if cfg.binarize == "static" else None
    )
    test_src = BatchSource(data.test, device, binarize_seed=cfg.seed + 1 if static else None)
    val_src = (
        BatchSource(val_x, device, binarize_seed=cfg.seed + 2 if static else None)
        if val_x is not None
        else None
    )
    model.to(device)
    n, bs = len(train_src), cfg.batch_size
    n_batches = -(-n // bs)
    objective = OBJECTIVES.build(cfg.objective, options=cfg.objective_options)
    optimizer = _adam(model, cfg.lr, device)
    # the moving average of the weights lives on rank 0, which evaluates and saves
    average = WeightAverage(model, cfg.ema) if cfg.ema is not None and ctx.is_main else None
    step_module = dist.wrap(model, objective, ctx, device) if ctx.distributed else None
    compile_mode = cfg.compile_mode if cfg.compile else None
    loss_of = _loss_function(model, objective, step_module, device, bf16, compile_mode)
    # temperature annealing (relaxed discrete families and their prior): epoch in fractions
    annealed = [f for f in (getattr(model.family, "set_epoch", None),
                            getattr(model.prior, "set_epoch", None)) if f is not None]
    # parts that join training part-way (a likelihood's context): the schedule's progress,
    # told to the moving average's copy too, which is what is evaluated
    staged = [f for m in (model, *([average.averaged.module] if average is not None else []))
              for f in (getattr(part, "set_progress", None)
                        for part in (m.family, m.prior, m.likelihood))
              if f is not None]

    result = TrainResult(model, [], run_dir)
    start_epoch, start_batch, step, wall = 0, 0, 0, 0.0
    partial: dict[str, Any] = {}
    best = _Best()
    if run_dir is not None and resume:
        start_epoch, start_batch, step, wall, partial = _restore(
            run_dir, model, optimizer, cfg, ctx, result, average
        )
        best = _Best.from_history(result.history, run_dir, model)
    elif run_dir is not None and ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / METRICS).unlink(missing_ok=True)
        save_model(model, run_dir, cfg)
    dist.barrier(ctx)
    elapsed0 = float(result.history[-1].get("elapsed", wall)) if result.history else wall
    clock = time.perf_counter()

    gen = torch.Generator(device="cpu")
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        progress = _progress(cfg, epoch, elapsed0 + time.perf_counter() - clock)
        _set_lr(optimizer, cfg, progress)
        changed = [set_progress(progress) for set_progress in staged]
        if any(changed) and step_module is not None:
            # DDP's static graph fixed the parameters that receive gradients: wrap anew
            step_module = dist.wrap(model, objective, ctx, device)
            loss_of = _loss_function(model, objective, step_module, device, bf16, compile_mode)
        gen.manual_seed(derived_seed(cfg.seed, epoch))
        perm = torch.randperm(n, generator=gen).to(train_src.index_device)
        first = start_batch if epoch == start_epoch else 0
        if first:  # continue in mid-epoch exactly where the saved state left off
            gen.set_state(partial["data"])
            _set_torch_rng(partial, ctx, cfg.seed, epoch)
            losses = partial["losses"].to(device)
            counted = partial["counted"].to(device)
            seconds, skipped = partial["seconds"], partial["skipped"]
        else:
            torch.manual_seed(derived_seed(cfg.seed, epoch, ctx.rank))
            losses = torch.zeros(n_batches, device=device)
            counted = torch.ones(n_batches, device=device)
            seconds, skipped = 0.0, 0
        sizes = torch.full((n_batches,), float(bs), device=device)
        sizes[-1] = n - bs * (n_batches - 1)
        bar = tqdm(range(first, n_batches), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not (progress and ctx.is_main), leave=False, unit="batch")
        checked = first
        t0 = time.perf_counter()
        for j in bar:
            # ------------------------------------------------------------ one step
            idx = perm[j * bs : (j + 1) * bs]
            share, weight = dist.shard(idx.numel(), ctx)
            if cfg.binarize == "dynamic":  # the whole batch, so every rank draws the same
                x = train_src.gather(idx)
                x = torch.bernoulli(x, generator=gen if x.device.type == "cpu" else None)
                x = x[share] if ctx.distributed else x
            else:
                x = train_src.gather(idx[share] if ctx.distributed else idx)
            t = epoch + j * bs / n
            for set_epoch in annealed:
                set_epoch(t)
            loss = loss_of(x, weight, t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.skip_nonfinite and _nonfinite(loss, ctx):
                skipped += 1
                counted[j] = 0.0
            else:
                optimizer.step()
                if average is not None:
                    average.update(model)
                losses[j] = loss.detach()
            step += 1
            # ------------------------------------------------------------ checks
            last = j == n_batches - 1
            if last or (j + 1 - checked) >= CHECK_EVERY or (stop.signum and not ctx.distributed):
                bad, stopping = _check(losses, checked, j + 1, stop.signum, ctx)
                checked = j + 1
                if bad is not None:
                    raise _nonfinite_error(losses, bad, epoch, step - (j + 1 - bad), n_batches,
                                           run_dir, ctx)
                if stopping and not last:
                    seconds += time.perf_counter() - t0
                    _stop(stop, run_dir, model, optimizer, average, ctx, result, gen, {
                        "epoch": epoch, "batch": j + 1, "step": step, "wall_time": wall + seconds,
                        "seconds": seconds, "skipped": skipped,
                    }, losses, counted)
        seconds += time.perf_counter() - t0
        wall += seconds
        # ---------------------------------------------------------------- epoch end
        batch_losses = dist.all_reduce_sum(losses * sizes * counted, ctx)
        seen = float((sizes * counted).sum())
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": (
                float(batch_losses.sum()) / (ctx.world_size * seen) if seen else float("nan")
            ),
        }
        done = False
        if ctx.is_main:
            record.update({
                "epoch_seconds": seconds,
                "wall_time": wall,
                "samples_per_s": n / seconds if seconds > 0 else float("nan"),
                "skipped_batches": skipped,
                "lr": optimizer.param_groups[0]["lr"],
            })
            improved = False
            out_of_time = _out_of_time(cfg, elapsed0 + time.perf_counter() - clock)
            # evaluate every eval_every epochs, and always after the last one
            scored = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs or out_of_time
            # the weights evaluated, chosen and saved: the moving average when there is one
            evaluated = average.model(model) if average is not None else model
            if scored:
                test = _evaluate(evaluated, test_src)
                record.update({"test_elbo": test["elbo"],
                               "test_reconstruction": test["reconstruction"],
                               "test_kl": test["kl"]})
                improved = True
                if val_src is not None:
                    record["validation_elbo"] = _evaluate(evaluated, val_src)["elbo"]
                    improved = best.update(record["validation_elbo"], epoch + 1, evaluated)
            if val_src is not None:
                record["best_epoch"] = best.epoch
            record["elapsed"] = elapsed0 + time.perf_counter() - clock
            done = out_of_time or (scored and _out_of_patience(cfg, epoch + 1 - best.epoch))
            result.history.append(record)
            if progress:
                tqdm.write(
                    f"epoch {epoch + 1:3d}  train loss {record['train_loss']:9.3f}  "
                    + (f"test ELBO {test['elbo']:9.3f}  " if scored else " " * 20)
                    + f"{record['samples_per_s']:8.0f} ex/s"
                    + (f"  skipped {skipped}" if skipped else "")
                )
            if run_dir is not None:
                info = {"epoch": epoch + 1, "batch": 0, "step": step, "wall_time": wall,
                        "world_size": ctx.world_size, "history": result.history}
                save_checkpoint(run_dir / CHECKPOINT, model, optimizer, {}, info,
                                _average_state(average))
                _append_jsonl(run_dir / METRICS, record)
                if improved:  # the evaluated weights; with a validation set only the best
                    save_model(evaluated, run_dir)
        dist.barrier(ctx)
        if _max_over_ranks(int(done), ctx, device):  # time limit or early stopping
            break
        signum = _max_over_ranks(stop.signum, ctx, device)
        if signum and epoch + 1 < cfg.epochs:  # a signal near the epoch's end: it is complete
            raise _interrupted(signum, epoch + 1, 0, step, run_dir)
    if ctx.is_main and val_src is not None:
        best.restore(model)
    elif average is not None:  # the returned model is the average, as evaluated and saved
        model.load_state_dict(average.model(model).state_dict())
    return result


LossFunction = Callable[[torch.Tensor, float, float], torch.Tensor]


def _loss_function(
    model: VAE,
    objective: Objective,
    step_module: torch.nn.Module | None,
    device: torch.device,
    bf16: bool,
    compile: str | None,
) -> LossFunction:
    """``loss_of(x, weight, epoch)``: the scalar training loss of one batch (share).

    Under DDP the loss comes from ``step_module`` (``weight`` is the share's weight);
    with ``compile`` (a :data:`varfam.config.COMPILE_MODES` mode) the whole forward
    pass, and so its backward pass, is compiled by ``torch.compile`` (one graph per
    batch shape: the full batch and the last one).
    """

    def loss_of(x: torch.Tensor, weight: float, epoch: float) -> torch.Tensor:
        with autocast(device, bf16):
            if step_module is None:
                return objective(model, x, epoch=epoch).loss
            return step_module(x, weight, epoch)

    if not compile:
        return loss_of
    _check_compiler(device)
    compiled = torch.compile(loss_of, dynamic=False, options=_compile_options(compile, device))

    def compiled_loss_of(x: torch.Tensor, weight: float, epoch: float) -> torch.Tensor:
        # tensors, not Python numbers, so that a new epoch or share weight is no new graph
        return compiled(x, torch.tensor(weight, dtype=torch.float64),
                        torch.tensor(epoch, dtype=torch.float64))

    return compiled_loss_of


def _compile_options(mode: str, device: torch.device) -> dict[str, Any] | None:
    """Inductor options of a compile mode (``max-autotune``: benchmark GEMM kernels)."""
    if mode == "default":
        return None
    # on a CPU the generated code also calls its kernels from C++, not Python
    return {"max_autotune": True, "cpp_wrapper": device.type == "cpu"}


def _check_compiler(device: torch.device) -> None:
    """torch.compile's code generator needs Triton on a GPU, a C++ compiler on a CPU."""
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            raise VarfamError("--compile on a GPU needs Triton (pip install triton)")
    elif not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++")):
        raise VarfamError(
            "--compile needs a C++ compiler (g++ or clang++; apt-get install g++), "
            "or train without --compile"
        )


# -------------------------------------------------------------------- validation, schedule
def _hold_out(x: Any, n_val: int) -> tuple[Any, Any]:
    """Split off the last ``n_val`` rows of ``x`` (views, so memory-mapped data stays mapped)."""
    if not n_val:
        return x, None
    if n_val >= len(x) - 1:
        raise VarfamError(
            f"--validation {n_val} leaves too few training examples (the data has {len(x)}); "
            "use a smaller validation set"
        )
    return x[: len(x) - n_val], x[len(x) - n_val :]


class _Best:
    """The best validation ELBO so far, its epoch, and a copy of those weights."""

    def __init__(self, value: float = -math.inf, epoch: int = 0) -> None:
        self.value, self.epoch = value, epoch
        self.state: dict[str, torch.Tensor] | None = None

    @classmethod
    def from_history(cls, history: list[dict[str, Any]], run_dir: Path, model: VAE) -> _Best:
        """On resume: the best epoch logged so far; its weights are in ``model.safetensors``."""
        scored = [r for r in history if "validation_elbo" in r]
        if not scored:
            return cls()
        top = max(scored, key=lambda r: r["validation_elbo"])
        best = cls(top["validation_elbo"], top["epoch"])
        from safetensors.torch import load_file

        weights = run_dir / "model.safetensors"
        if weights.is_file():
            best.state = load_file(str(weights), device=str(model.device))
        return best

    def update(self, value: float, epoch: int, model: VAE) -> bool:
        if value > self.value:
            self.value, self.epoch = value, epoch
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True
        return False

    def restore(self, model: VAE) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


def _progress(cfg: TrainConfig, epoch: int, elapsed: float) -> float:
    """How far training is at the start of ``epoch``, in [0, 1]: the fraction of the epochs
    or, where a time limit is set and comes first, of the time limit."""
    progress = epoch / cfg.epochs
    if cfg.time_limit is not None:
        progress = max(progress, elapsed / (60.0 * cfg.time_limit))
    return min(progress, 1.0)


def _set_lr(optimizer: torch.optim.Optimizer, cfg: TrainConfig, progress: float) -> None:
    """The learning rate at ``progress`` (:func:`_progress`): constant, or cosine over it."""
    if cfg.lr_schedule == "constant":
        return
    r = cfg.lr_final_ratio
    lr = cfg.lr * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress)))
    for group in optimizer.param_groups:
        group["lr"] = lr


def _out_of_time(cfg: TrainConfig, elapsed: float) -> bool:
    """Whether the time limit (minutes) has passed after ``elapsed`` seconds."""
    return cfg.time_limit is not None and elapsed >= 60.0 * cfg.time_limit


def _out_of_patience(cfg: TrainConfig, epochs_since_best: int) -> bool:
    """Whether early stopping's patience has run out."""
    return cfg.patience is not None and epochs_since_best >= cfg.patience


# -------------------------------------------------------------------- helpers
def _adam(model: VAE, lr: float, device: torch.device) -> torch.optim.Adam:
    """Adam with the fused kernel (one pass over all parameters) where the device has it."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - devices without fused Adam
        return torch.optim.Adam(model.parameters(), lr=lr)


def _check_data(model: VAE, x: Any) -> None:
    """The likelihood's support check: on a float tensor at once, else chunk by chunk."""
    if isinstance(x, torch.Tensor) and x.is_floating_point() and not is_file_backed(x):
        model.likelihood.check_data(x)
        return
    for chunk in float_chunks(x, _EVAL_CHUNK):
        model.likelihood.check_data(chunk)


def _max_over_ranks(signum: int, ctx: dist.Context, device: torch.device) -> int:
    """The largest value over ranks (a signal or flag any rank raised): all ranks stop together."""
    if not ctx.distributed:
        return signum
    flag = dist.all_reduce_max(torch.tensor([float(signum)], device=device), ctx)
    return int(flag[0])


def _evaluate(model: VAE, src: BatchSource) -> dict[str, float]:
    """Test ELBO and its terms (nats per example) over a batch source."""
    whole = src.whole()
    if whole is not None:
        return evaluate_elbo(model, whole)
    sums = {"elbo": 0.0, "reconstruction": 0.0, "kl": 0.0}
    for chunk in src.chunks(_EVAL_CHUNK):
        part = evaluate_elbo(model, chunk)
        for k in sums:
            sums[k] += part[k] * chunk.shape[0]
    return {k: v / len(src) for k, v in sums.items()}


def _nonfinite(loss: torch.Tensor, ctx: dist.Context) -> bool:
    """Whether the loss is non-finite on any rank (one host sync; used by skip_nonfinite)."""
    flag = (~torch.isfinite(loss.detach())).float().reshape(1)
    return bool(dist.all_reduce_max(flag, ctx))


def _check(
    losses: torch.Tensor, lo: int, hi: int, signum: int, ctx: dist.Context
) -> tuple[int | None, bool]:
    """First non-finite loss among batches ``lo:hi`` (on any rank) and whether to stop."""
    bad = (~torch.isfinite(losses[lo:hi])).nonzero()
    first = lo + int(bad[0, 0]) if bad.numel() else hi
    if ctx.distributed:  # agree on the earliest bad batch and on stopping
        flags = torch.tensor([float(-first), float(signum > 0)], device=losses.device)
        dist.all_reduce_max(flags, ctx)
        first, signum = int(-flags[0]), int(flags[1])
    return (first if first < hi else None), signum > 0


def _nonfinite_error(
    losses: torch.Tensor,
    batch: int,
    epoch: int,
    step: int,
    n_batches: int,
    run_dir: Path | None,
    ctx: dist.Context,
) -> VarfamError:
    value = float(losses[batch])
    kept = f"; the last good checkpoint is kept in {run_dir}" if run_dir is not None else ""
    return VarfamError(
        f"the loss became {value if value == value else 'nan'} at epoch {epoch + 1}, step "
        f"{step + 1} (batch {batch + 1} of {n_batches}); likely a learning rate too high or data "
        "the likelihood cannot model (try a lower --lr, --precision fp32, or --skip-nonfinite "
        f"to skip such batches){kept}"
    )


def _set_torch_rng(partial: dict[str, Any], ctx: dist.Context, seed: int, epoch: int) -> None:
    state = partial.get(f"torch.{ctx.rank}")
    if state is not None and partial.get("world_size") == ctx.world_size:
        torch.set_rng_state(state)
        if f"cuda.{ctx.rank}" in partial and torch.cuda.is_available():
            torch.cuda.set_rng_state(partial[f"cuda.{ctx.rank}"])
    else:  # another world size: continue with fresh noise (not bit-exact)
        torch.manual_seed(derived_seed(seed, epoch, ctx.rank, partial.get("batch", 0)))


def _interrupted(
    signum: int, epoch: int, batch: int, step: int, run_dir: Path | None
) -> TrainingInterrupted:
    """``epoch``: completed epochs; ``batch``: batches done of the next one (0 at a boundary)."""
    name = signal.Signals(signum).name
    where = f"after epoch {epoch}" if batch == 0 else f"in epoch {epoch + 1} after {batch} batches"
    saved = (
        f"; its state is saved: resume with `varfam train --resume {run_dir}`"
        if run_dir is not None
        else "; nothing was saved (no run folder)"
    )
    return TrainingInterrupted(f"training stopped by {name} {where} (step {step}){saved}", signum)


def _stop(
    stop: _StopRequest,
    run_dir: Path | None,
    model: VAE,
    optimizer: torch.optim.Optimizer,
    average: WeightAverage | None,
    ctx: dist.Context,
    result: TrainResult,
    gen: torch.Generator,
    info: dict[str, Any],
    losses: torch.Tensor,
    counted: torch.Tensor,
) -> None:
    """Save the mid-epoch state (every rank's RNG too) and raise :class:`TrainingInterrupted`."""
    torch_states = dist.all_gather_bytes(torch.get_rng_state(), ctx)
    cuda = losses.device.type == "cuda"
    cuda_states = dist.all_gather_bytes(torch.cuda.get_rng_state(), ctx) if cuda else []
    signum = stop.signum or signal.SIGTERM
    if run_dir is not None and ctx.is_main:
        states = {"data": gen.get_state(), "losses": losses.cpu(), "counted": counted.cpu()}
        states.update({f"torch.{r}": s for r, s in enumerate(torch_states)})
        states.update({f"cuda.{r}": s for r, s in enumerate(cuda_states)})
        info = {**info, "world_size": ctx.world_size, "history": result.history}
        save_checkpoint(run_dir / CHECKPOINT, model, optimizer, states, info,
                        _average_state(average))
    dist.barrier(ctx)
    raise _interrupted(signum, info["epoch"], info["batch"], info["step"], run_dir)


def _restore(
    run_dir: Path,
    model: VAE,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    ctx: dist.Context,
    result: TrainResult,
    average: WeightAverage | None,
) -> tuple[int, int, int, float, dict[str, Any]]:
    """Load the checkpoint; return (epoch, batch, step, wall time, mid-epoch state)."""
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise VarfamError(
            f"{run_dir} has no {CHECKPOINT} to resume from (it stopped before saving any state); "
            "start the training again without --resume"
        )
    states, info = load_checkpoint(path, model, optimizer, average)
    epoch, batch = int(info["epoch"]), int(info.get("batch", 0))
    if epoch >= cfg.epochs:
        raise VarfamError(
            f"run {run_dir} already finished {epoch} epochs; "
            f"pass --epochs N with N > {epoch} to train further"
        )
    history = info.get("history")
    if history is None:  # a checkpoint written before the history was stored in it
        history = [
            r for r in _read_lines(run_dir) if "kind" not in r and 0 < r.get("epoch", 0) <= epoch
        ]
    result.history = list(history)
    if ctx.is_main:
        _rewrite_metrics(run_dir, result.history, epoch)
    partial: dict[str, Any] = {}
    if batch:
        partial = {**states, "seconds": float(info.get("seconds", 0.0)),
                   "skipped": int(info.get("skipped", 0)), "batch": batch,
                   "world_size": info.get("world_size", 1)}
    return epoch, batch, int(info["step"]), float(info["wall_time"]), partial


def _rewrite_metrics(run_dir: Path, history: list[dict[str, Any]], epoch: int) -> None:
    """Keep ``metrics.jsonl`` consistent with the checkpoint.

    Epoch lines after the checkpoint's epoch (a kill between the writes) are
    dropped, lines the kill prevented are restored from the checkpoint, and
    other lines (``varfam eval`` results) are kept in place.
    """
    lines = [
        r for r in _read_lines(run_dir) if "kind" in r or 0 < r.get("epoch", 0) <= epoch
    ]
    logged = {r["epoch"] for r in lines if "kind" not in r}
    lines += [r for r in history if r["epoch"] not in logged]
    write_text_atomic(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in lines))


def _average_state(average: WeightAverage | None) -> dict[str, torch.Tensor] | None:
    return average.state_dict() if average is not None else None


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _read_lines(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
