"""The training loop: batches gathered from one array, bf16 autocast, checkpoints, exact resume.

Read :func:`fit` first: it is the whole loop on one screen. :func:`train` resolves
the config, joins the process group when started by torchrun and builds a
:class:`Loop` (data sources, objective, optimizer, the loss function); then every
epoch is :func:`begin_epoch` (learning rate, staged parts), :func:`run_epoch`
(the steps), :func:`end_epoch` (train loss, evaluation, best weights), the
callbacks' ``on_epoch_end``, :func:`save` (the checkpoint) and the stop rule.

Everything that only watches (progress display, ``metrics.jsonl``, trackers,
pictures, a user's metric) is a :class:`~varfam.training.callbacks.Callback`; the state
they see is the :class:`~varfam.training.state.TrainState` the checkpoint saves.

Every epoch draws its permutation from a generator seeded by ``(seed, epoch)``
and re-seeds torch from ``(seed, epoch, rank)``, so an epoch depends only on the
weights and optimizer state it starts from: resuming at an epoch boundary, or in
mid-epoch from the state saved on SIGINT/SIGTERM, gives the same final weights
as an uninterrupted run.

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
import math
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
from torch.distributions import Distribution

from varfam.config import DATA_FIELDS, DataConfig, RunConfig, TrainConfig
from varfam.data import Dataset, load_data, split_seed
from varfam.data.mapped import split_rows
from varfam.errors import VarfamError, suggest
from varfam.evaluation.bounds import evaluate_elbo, importance_sampling
from varfam.parts import resolve_device, use_bf16
from varfam.registry import OBJECTIVES
from varfam.runs.checkpoint import (
    CHECKPOINT,
    RunLock,
    load_checkpoint,
    save_checkpoint,
    save_model,
)
from varfam.runs.folder import check_run_folder, clear_run_folder
from varfam.runs.metrics import read_records, write_records
from varfam.training import distributed as dist
from varfam.training.adam_step import AdamStep
from varfam.training.averaging import WeightAverage
from varfam.training.batches import BatchSource, float_chunks, is_file_backed
from varfam.training.callbacks import Callback, CallbackList, TrainingRun, builtin_callbacks
from varfam.training.defaults import resolved
from varfam.training.labels import TrainingLabels
from varfam.training.state import TrainResult, TrainState
from varfam.training.step import AuxiliaryStep, LossFunction, auxiliary_step, loss_function

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE
    from varfam.objectives import Objective

__all__ = ["train", "train_from_config", "TrainResult", "TrainState", "TrainingInterrupted",
           "derived_seed", "CHECK_EVERY"]

#: Steps between the checks for a non-finite loss (and, under torchrun, for a stop signal).
CHECK_EVERY = 50

#: The stream of :func:`derived_seed` that seeds an objective's auxiliary modules.
_AUXILIARY_STREAM = -1

_EVAL_CHUNK = 10_000


class TrainingInterrupted(VarfamError):
    """Training stopped on SIGINT (exit code 130) or SIGTERM (143) after saving its state."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def derived_seed(seed: int, *stream: int) -> int:
    """A 63-bit seed for ``(seed, *stream)``, e.g. an epoch's permutation or a rank's noise."""
    digest = hashlib.blake2b(repr((seed, *stream)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# ==================================================================== the public entry point
def train(
    model: VAE,
    data: Dataset,
    config: TrainConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = True,
    progress: bool = False,
    callbacks: Sequence[Callback] = (),
    **overrides: Any,
) -> TrainResult:
    """Train ``model`` on ``data.train``, evaluating the test ELBO after every epoch.

    Options are the fields of :class:`TrainConfig` (``epochs``, ``batch_size``,
    ``lr``, ``objective``, ``objective_options``, ``binarize``, ``precision``,
    ``seed``, ``device``, ``skip_nonfinite``, ``track`` …), given as ``config``
    and/or keywords; those left unset are chosen from the data
    (:func:`varfam.training.defaults.resolved`: for a table the IWAE recipe with a
    validation split and early stopping) and recorded so in ``config.json``. With
    ``out`` the run folder (locked meanwhile) receives ``config.json``, ``metrics.jsonl``,
    ``model.safetensors`` and ``checkpoint.safetensors`` after every epoch;
    ``resume=True`` continues from that checkpoint exactly. A run already in ``out`` is
    replaced, or with ``overwrite=False`` refused before anything is done.
    SIGINT/SIGTERM save the state reached and raise :class:`TrainingInterrupted`.

    ``progress``: print one line per epoch to stderr, with a progress bar when
    stderr is a terminal. ``callbacks``: :class:`~varfam.training.callbacks.Callback`
    objects, called before the built-in ones (display, ``metrics.jsonl``, the
    trackers named in ``config.track``).

    What describes the data belongs to ``data`` (:func:`varfam.load_data`), recorded as
    ``data.config``; :func:`train_from_config` does it all from one RunConfig.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the model trains with
    DistributedDataParallel; ``batch_size`` is the global batch, split across
    ranks, and only rank 0 evaluates, writes files and calls callbacks (see
    :mod:`varfam.training.distributed`). ``data.train`` may be a tensor, a NumPy array or
    a memory-mapped array (read batch by batch when large, see
    :mod:`varfam.training.batches`).
    """
    _check_dataset(data)
    cfg = resolved(_train_config(config, overrides), data)  # unset settings from the data
    _check_call(data, cfg, out, resume, overwrite)
    device = resolve_device(cfg.device)
    ctx = dist.setup(device)
    env = Env(dist.local_device(ctx, device), ctx, Path(out) if out is not None else None)
    try:
        with _StopRequest() as env.stop, _no_distribution_validation(cfg.compile):
            # everything is checked and built before the run folder is touched
            loop = setup(model, data, cfg, env, _callbacks(cfg, env, progress, callbacks))
            lock = RunLock(env.run_dir) if env.run_dir is not None and ctx.is_main else None
            with lock or contextlib.nullcontext():
                result = fit(loop, resume)
    except BaseException:
        dist.teardown(ctx, together=False)  # other ranks may be gone: no barrier
        raise
    dist.teardown(ctx, together=True)
    return result


def train_from_config(
    config: RunConfig,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = True,
    progress: bool = False,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Load the data, build the model that fits it and train it, all as ``config`` says.

    This is the one call ``varfam train`` makes (``varfam train --config run.toml`` and
    ``train_from_config(RunConfig.from_toml("run.toml"))`` give bit-identical weights):
    :func:`varfam.load_data` with the run's seed and validation size, then
    :meth:`VAE.for_data <varfam.model.VAE.for_data>` under ``torch.manual_seed(seed)``,
    then :func:`train`. With ``resume=True`` ``config`` is the run's own
    (:func:`varfam.runs.load_run_config`) and training continues from its checkpoint.
    """
    from varfam.model import VAE

    def load(validation: int) -> Dataset:
        return load_data(config.data, seed=config.train.seed, validation=validation,
                         columns=_saved_columns(config))

    data = load(config.train.validation or 0)
    if config.train.validation is None and config.data.labelled is not None:
        held = resolved(config.train, data).validation  # labels are kept outside it
        if held:
            data = load(held)
    torch.manual_seed(config.train.seed)
    model = VAE.for_data(data, config.model)
    return train(model, data, config.train, out=out, resume=resume, overwrite=overwrite,
                 progress=progress, callbacks=callbacks)


def _saved_columns(config: RunConfig) -> list[Any] | None:
    """The table columns a (resumed) run's model recorded; its data is read with them."""
    m = config.model
    return m.likelihood_options.get("columns") if m.likelihood == "mixed" else None


def _train_config(config: TrainConfig | None, overrides: dict[str, Any]) -> TrainConfig:
    """``config`` with keyword ``overrides``; data settings are refused with their home."""
    data_keys = [k for k in overrides if k in DATA_FIELDS or k in DataConfig.__dataclass_fields__]
    if data_keys:
        key = data_keys[0]
        raise VarfamError(
            f"{key} describes the data, not the training: load the data with it, "
            f"varfam.load_data(varfam.DataConfig(source=..., "
            f"{DATA_FIELDS.get(key, key)}=...)), and pass that dataset to train"
        )
    unknown = [k for k in overrides if k not in TrainConfig.__dataclass_fields__]
    if unknown:
        raise VarfamError(f"unknown training option '{unknown[0]}'"
                          f"{suggest(unknown[0], TrainConfig.__dataclass_fields__)}; "
                          "the options are the fields of varfam.TrainConfig")
    base = dataclasses.asdict(config) if config is not None else {}
    return TrainConfig(**{**base, **overrides})


def _check_call(data: Any, cfg: TrainConfig, out: str | Path | None, resume: bool,
                overwrite: bool) -> None:
    """What :func:`train` checks before anything is built: the data is a dataset, the
    settings agree with it, and ``out`` may take a new run."""
    _check_dataset(data)
    RunConfig(train=cfg, data=data.config or DataConfig(source=None))  # cross-section checks
    if out is not None and not resume and dist.launched_rank() == 0:
        check_run_folder(out, overwrite)


def _check_dataset(data: Any) -> None:
    """A one-line error for data that is not a :class:`~varfam.data.Dataset`."""
    if isinstance(data, Dataset):
        return
    kind = type(data).__name__
    if kind == "Table":
        hint = "a table trains as its dataset: varfam.train(model, table.dataset())"
    elif isinstance(data, torch.Tensor) or hasattr(data, "__array__"):
        hint = ("wrap arrays in a dataset: varfam.Dataset('mine', train, test), or load a "
                "file with varfam.load_data('file.npy')")
    else:
        hint = "load one with varfam.load_data(...) or varfam.load_dataset(name)"
    raise VarfamError(f"train takes a varfam.Dataset, got {kind}; {hint}")


def _callbacks(
    cfg: TrainConfig, env: Env, progress: bool, user: Sequence[Callback]
) -> CallbackList:
    """The user's callbacks, then the built-in ones; none on ranks other than 0."""
    if not env.ctx.is_main:
        return CallbackList()
    from varfam.training.trackers import make_trackers

    trackers = make_trackers(cfg, env.run_dir)
    return CallbackList([*user, *builtin_callbacks(env.run_dir, progress, trackers)])


# ==================================================================== the loop
def fit(loop: Loop, resume: bool) -> TrainResult:
    """Train from a fresh start or the run folder's checkpoint to the end; the whole loop."""
    state = restore(loop) if resume else start(loop)
    loop.hooks.on_train_start(loop.training_run(state))
    while state.epoch < loop.cfg.epochs:
        begin_epoch(loop, state)
        losses, counted = run_epoch(loop, state)
        metrics, done = end_epoch(loop, state, losses, counted)
        if loop.env.ctx.is_main:
            loop.hooks.on_epoch_end(state, metrics)
        save(loop, state, improved="test_elbo" in metrics and state.best_epoch in (0, state.epoch))
        if _max_over_ranks(int(done), loop):  # time limit or early stopping
            break
        signum = _max_over_ranks(loop.env.stop.signum, loop)
        if signum and state.epoch < loop.cfg.epochs:  # a signal near the epoch's end
            raise _interrupted(signum, state, loop.env.run_dir)
    finish(loop)
    result = TrainResult(loop.model, state.history, loop.env.run_dir, state, loop.objective)
    loop.hooks.on_train_end(result)
    return result


@dataclass
class Env:
    """Where training runs: device, process group, run folder, and the stop request."""

    device: torch.device
    ctx: dist.Context
    run_dir: Path | None
    stop: _StopRequest | None = None


@dataclass
class Loop:
    """What the loop is built from (made once by :func:`setup`)."""

    model: VAE
    data: Dataset
    cfg: TrainConfig
    env: Env
    hooks: CallbackList
    train_src: BatchSource
    test_src: BatchSource
    val_src: BatchSource | None
    objective: Objective
    optimizer: torch.optim.Optimizer
    average: WeightAverage | None
    step_module: torch.nn.Module | None = None
    loss_of: LossFunction | None = None
    #: the step of the objective's auxiliary modules (FactorVAE's discriminator), if any
    aux_step: AuxiliaryStep | None = None
    gen: torch.Generator = field(default_factory=lambda: torch.Generator(device="cpu"))
    best_weights: dict[str, torch.Tensor] | None = None
    started: float = field(default_factory=time.perf_counter)
    elapsed0: float = 0.0
    #: the labels of a model conditioned on labels (hidden ones -1), and the training
    #: labels on the device the batches are gathered from
    labels: TrainingLabels | None = None
    train_y: torch.Tensor | None = None

    @property
    def n(self) -> int:
        """Training rows per epoch: the examples, or the mixed batches' indices."""
        return self.labels.rows if self.labels is not None else len(self.train_src)

    @property
    def n_batches(self) -> int:
        return -(-self.n // self.cfg.batch_size)

    def elapsed(self) -> float:
        """Seconds since training began (before an interruption too)."""
        return self.elapsed0 + time.perf_counter() - self.started

    def evaluated(self) -> VAE:
        """The weights evaluated, chosen and saved: the moving average when there is one."""
        return self.average.model(self.model) if self.average is not None else self.model

    def build_loss(self) -> None:
        """(Re)build the step's loss (and DDP's wrapper, whose static graph fixes the
        parameters that receive gradients)."""
        env, cfg = self.env, self.cfg
        if env.ctx.distributed:
            self.step_module = dist.wrap(self.model, self.objective, env.ctx, env.device)
        self.loss_of = loss_function(self.model, self.objective, self.step_module, env.device,
                                     use_bf16(cfg.precision, env.device),
                                     cfg.compile_mode if cfg.compile else None)

    def training_run(self, state: TrainState) -> TrainingRun:
        return TrainingRun(self.model, self.data, self.cfg, self.env.run_dir, self.n_batches,
                           state.epoch, self.hooks.on_images)


def setup(model: VAE, data: Dataset, cfg: TrainConfig, env: Env, hooks: CallbackList) -> Loop:
    """Check the data, build the batch sources, objective, optimizer and loss function."""
    train_x, val_x = _hold_out(data.train, cfg.validation)
    model.check_data(data, "the training data")
    _check_data(model, train_x)
    static = cfg.binarize != "none"

    def source(x: Any, split: str, binarized: bool) -> BatchSource:
        seed = split_seed(cfg.seed, split) if binarized else None  # type: ignore[arg-type]
        return BatchSource(x, env.device, binarize_seed=seed)

    model.to(env.device)
    labels = TrainingLabels.of(model, data, cfg.validation, cfg.batch_size, cfg.labelled_ratio)
    options = dict(cfg.objective_options)
    if labels is not None and model.has_classifier:  # α and N_l / N
        options.update(labels.objective_options(cfg.alpha, cfg.labelled_weight))
    train_src = source(train_x, "train", cfg.binarize == "static")
    loop = Loop(
        model, data, cfg, env, hooks,
        train_src=train_src,
        test_src=source(data.test, "test", static),
        val_src=source(val_x, "validation", static) if val_x is not None else None,
        objective=OBJECTIVES.build(cfg.objective, options=options),
        optimizer=_adam(model, cfg.lr),
        # the moving average lives on rank 0, which evaluates and saves
        average=WeightAverage(model, cfg.ema) if cfg.ema is not None and env.ctx.is_main else None,
        labels=labels,
        train_y=None if labels is None else labels.train.to(train_src.index_device),
    )
    prepare_objective(loop)
    loop.build_loss()
    return loop


def prepare_objective(loop: Loop) -> None:
    """Tell the objective the data size and batch (it may refuse them, or build auxiliary
    modules, seeded from the run's seed) and make the step of its auxiliary modules."""
    env, cfg, device = loop.env, loop.cfg, loop.env.device
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(derived_seed(cfg.seed, _AUXILIARY_STREAM))
        loop.objective.prepare(loop.model, data_size=len(loop.train_src),
                               batch_size=max(1, cfg.batch_size // env.ctx.world_size))
    loop.aux_step = auxiliary_step(loop.model, loop.objective, env.ctx)


def start(loop: Loop) -> TrainState:
    """A fresh run: the folder gets ``config.json`` and the initial weights, no metrics."""
    run_dir = loop.env.run_dir
    if run_dir is not None and loop.env.ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        clear_run_folder(run_dir)
        save_model(loop.model, run_dir, loop.cfg, loop.data.config or DataConfig(source=None))
    dist.barrier(loop.env.ctx)
    return TrainState()


def begin_epoch(loop: Loop, state: TrainState) -> None:
    """Learning rate and staged parts for the schedule's progress at this epoch."""
    progress = _progress(loop.cfg, state.epoch, loop.elapsed())
    _set_lr(loop.optimizer, loop.cfg, progress)
    changed = loop.model.set_progress(progress)
    if loop.average is not None:  # the average's copy is what is evaluated
        loop.average.averaged.module.set_progress(progress)
    if changed and loop.env.ctx.distributed:
        loop.build_loss()
    loop.model.train()
    if loop.env.ctx.is_main:
        loop.hooks.on_epoch_start(state)


def run_epoch(loop: Loop, state: TrainState) -> tuple[torch.Tensor, torch.Tensor]:
    """The steps of epoch ``state.epoch`` from batch ``state.batch``: (losses, counted)."""
    cfg, ctx, bs = loop.cfg, loop.env.ctx, loop.cfg.batch_size
    perm, losses, counted = _open_epoch(loop, state)
    # what a step calls, decided once: hooks that do something, Adam's kernel without its wrapper
    set_epoch = loop.model.epoch_hook()
    step_hooks = loop.hooks.step_end_hooks() if ctx.is_main else []
    adam, loss_of, average = AdamStep(loop.optimizer), loop.loss_of, loop.average
    n, n_batches, stop = loop.n, loop.n_batches, loop.env.stop
    checked, t0 = state.batch, time.perf_counter()
    for j in range(state.batch, n_batches):
        x, y, weight = _gather(loop, perm[j * bs : (j + 1) * bs])
        t = state.epoch + j * bs / n
        if set_epoch is not None:
            set_epoch(t)
        loss = loss_of(x, weight, t, y)
        adam.zero_grad()
        loss.backward()
        if cfg.skip_nonfinite and _nonfinite(loss, ctx):
            state.skipped += 1
            counted[j] = 0.0
        else:
            adam.step()
            if loop.aux_step is not None:  # the objective's own modules, after the model
                loop.aux_step(x, weight, t, y)
            if average is not None:
                average.update(loop.model)
            losses[j] = loss.detach()
        state.step, state.batch = state.step + 1, j + 1
        for hook in step_hooks:
            hook(state)
        last = j == n_batches - 1
        if last or j + 1 - checked >= CHECK_EVERY or (stop.signum and not ctx.distributed):
            _check(loop, state, losses, counted, checked, t0)
            checked = j + 1
    state.seconds += time.perf_counter() - t0
    return losses, counted


def end_epoch(
    loop: Loop, state: TrainState, losses: torch.Tensor, counted: torch.Tensor
) -> tuple[dict[str, Any], bool]:
    """Close the epoch: its metrics (rank 0 evaluates) and whether training should stop."""
    ctx = loop.env.ctx
    sizes = torch.full((loop.n_batches,), float(loop.cfg.batch_size), device=losses.device)
    sizes[-1] = loop.n - loop.cfg.batch_size * (loop.n_batches - 1)
    summed = float(dist.all_reduce_sum(losses * sizes * counted, ctx).sum())
    seen = float((sizes * counted).sum())
    state.epoch, state.batch, state.tensors = state.epoch + 1, 0, {}
    state.wall_time += state.seconds
    metrics: dict[str, Any] = {
        "epoch": state.epoch,
        "step": state.step,
        "train_loss": summed / (ctx.world_size * seen) if seen else float("nan"),
    }
    if not ctx.is_main:
        return metrics, False
    metrics.update({
        "epoch_seconds": state.seconds,
        "wall_time": state.wall_time,
        "samples_per_s": loop.n / state.seconds if state.seconds > 0 else float("nan"),
        "skipped_batches": state.skipped,
        "lr": loop.optimizer.param_groups[0]["lr"],
    })
    out_of_time = _out_of_time(loop.cfg, loop.elapsed())
    # evaluate every eval_every epochs, and always after the last one
    if state.epoch % loop.cfg.eval_every == 0 or state.epoch == loop.cfg.epochs or out_of_time:
        metrics.update(evaluate_epoch(loop, state))
    if loop.val_src is not None:
        metrics["best_epoch"] = state.best_epoch
    state.elapsed = metrics["elapsed"] = loop.elapsed()
    state.history.append(metrics)
    patience = loop.cfg.patience
    done = out_of_time or (
        "test_elbo" in metrics and bool(patience)
        and state.epoch - state.best_epoch >= patience
    )
    return metrics, done


def evaluate_epoch(loop: Loop, state: TrainState) -> dict[str, float]:
    """Test ELBO and its terms, and the validation ELBO (keeping the best weights).

    An importance-weighted objective (IWAE, k > 1) is validated on its own bound L_k
    (``validation_iwae``, fixed draws): training L_k widens q(z|x), so the one-sample
    ELBO falls while L_k (and the model) still improves, and choosing on the ELBO would
    keep the weights of the first epochs."""
    evaluated = loop.evaluated()
    labels = loop.labels
    test = _evaluate(evaluated, loop.test_src, None if labels is None else labels.test)
    out = {"test_elbo": test["elbo"], "test_reconstruction": test["reconstruction"],
           "test_kl": test["kl"]}
    if "accuracy" in test:  # a model with a classifier q(y|x)
        out["test_accuracy"] = test["accuracy"]
    if loop.val_src is not None:
        value = out["validation_elbo"] = _evaluate(
            evaluated, loop.val_src, None if labels is None else labels.validation
        )["elbo"]
        k = getattr(loop.objective, "k", 1)
        if isinstance(k, int) and k > 1 and labels is None:
            value = out["validation_iwae"] = _bound(evaluated, loop.val_src, k, loop.cfg.seed)
        if state.improves(value):
            state.best_validation, state.best_epoch = value, state.epoch
            loop.best_weights = {k: v.detach().clone()
                                 for k, v in evaluated.state_dict().items()}
    return out


def save(loop: Loop, state: TrainState, improved: bool) -> None:
    """Rank 0 writes the checkpoint and, when the evaluated weights improved (or were scored
    without a validation set), ``model.safetensors``."""
    run_dir = loop.env.run_dir
    if run_dir is not None and loop.env.ctx.is_main:
        _save_checkpoint(loop, state)
        if improved:
            save_model(loop.evaluated(), run_dir)
    dist.barrier(loop.env.ctx)


def finish(loop: Loop) -> None:
    """The returned model holds the weights that were chosen and saved."""
    if loop.env.ctx.is_main and loop.val_src is not None:
        if loop.best_weights is not None:
            loop.model.load_state_dict(loop.best_weights)
    elif loop.average is not None:
        loop.model.load_state_dict(loop.average.model(loop.model).state_dict())


def restore(loop: Loop) -> TrainState:
    """Load the run folder's checkpoint into the model, optimizer and average; its state."""
    run_dir = loop.env.run_dir
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise VarfamError(
            f"{run_dir} has no {CHECKPOINT} to resume from (it stopped before saving any state); "
            "start the training again without --resume"
        )
    tensors, info = load_checkpoint(path, loop.model, loop.optimizer, loop.average,
                                    _auxiliary(loop))
    if "history" not in info:  # a checkpoint written before the history was stored in it
        info["history"] = [r for r in read_records(run_dir)
                           if "kind" not in r and 0 < r.get("epoch", 0) <= int(info["epoch"])]
    state = TrainState.from_checkpoint(info, tensors)
    if state.epoch >= loop.cfg.epochs:
        raise VarfamError(
            f"run {run_dir} already finished {state.epoch} epochs; "
            f"pass --epochs N with N > {state.epoch} to train further"
        )
    if loop.env.ctx.is_main:
        _rewrite_metrics(run_dir, state.history, state.epoch)
        if state.best_epoch and (run_dir / "model.safetensors").is_file():
            from safetensors.torch import load_file

            loop.best_weights = load_file(str(run_dir / "model.safetensors"),
                                          device=str(loop.model.device))
    loop.elapsed0 = state.elapsed
    return state


# ==================================================================== steps of an epoch
def _open_epoch(loop: Loop, state: TrainState) -> tuple[torch.Tensor, ...]:
    """The epoch's order and loss buffers: fresh, or as the mid-epoch checkpoint left them."""
    cfg, ctx, device = loop.cfg, loop.env.ctx, loop.env.device
    loop.gen.manual_seed(derived_seed(cfg.seed, state.epoch))
    perm = (loop.labels.order(loop.gen) if loop.labels is not None
            else torch.randperm(loop.n, generator=loop.gen)).to(loop.train_src.index_device)
    if state.batch:  # continue in mid-epoch exactly where the saved state left off
        loop.gen.set_state(state.tensors["data"])
        _set_torch_rng(state, ctx, cfg.seed)
        return perm, state.tensors["losses"].to(device), state.tensors["counted"].to(device)
    torch.manual_seed(derived_seed(cfg.seed, state.epoch, ctx.rank))
    state.seconds, state.skipped = 0.0, 0
    return (perm, torch.zeros(loop.n_batches, device=device),
            torch.ones(loop.n_batches, device=device))


def _gather(loop: Loop, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """This rank's share of the batch at ``idx``, its labels (a model conditioned on labels;
    ``-1`` where hidden) and its weight in the loss."""
    ctx = loop.env.ctx
    share, weight = dist.shard(idx.numel(), ctx)
    mine = idx[share] if ctx.distributed else idx
    y = None if loop.train_y is None else loop.train_y[mine].to(loop.env.device)
    if loop.cfg.binarize == "dynamic":  # the whole batch, so every rank draws the same
        x = loop.train_src.gather(idx)
        x = torch.bernoulli(x, generator=loop.gen if x.device.type == "cpu" else None)
        return (x[share] if ctx.distributed else x), y, weight
    return loop.train_src.gather(mine), y, weight


def _check(
    loop: Loop, state: TrainState, losses: torch.Tensor, counted: torch.Tensor,
    checked: int, t0: float,
) -> None:
    """Raise on a non-finite loss in batches ``checked:state.batch``; on a stop request
    in mid-epoch, save the state reached and raise :class:`TrainingInterrupted`."""
    ctx, hi = loop.env.ctx, state.batch
    bad = (~torch.isfinite(losses[checked:hi])).nonzero()
    first = checked + int(bad[0, 0]) if bad.numel() else hi
    signum = loop.env.stop.signum
    if ctx.distributed:  # agree on the earliest bad batch and on stopping
        flags = torch.tensor([float(-first), float(signum)], device=losses.device)
        dist.all_reduce_max(flags, ctx)
        first, signum = int(-flags[0]), int(flags[1])
    if first < hi:
        raise _nonfinite_error(float(losses[first]), first, state, loop)
    if signum and hi < loop.n_batches:
        state.seconds += time.perf_counter() - t0
        state.elapsed = loop.elapsed()
        state.tensors = {"data": loop.gen.get_state(), "losses": losses, "counted": counted,
                         **_rng_states(losses.device, ctx)}
        if loop.env.run_dir is not None and ctx.is_main:
            _save_checkpoint(loop, state)
        dist.barrier(ctx)
        raise _interrupted(signum, state, loop.env.run_dir)


def _save_checkpoint(loop: Loop, state: TrainState) -> None:
    info, tensors = state.to_checkpoint(loop.env.ctx.world_size)
    average = loop.average.state_dict() if loop.average is not None else None
    save_checkpoint(loop.env.run_dir / CHECKPOINT, loop.model, loop.optimizer, tensors, info,
                    average, _auxiliary(loop))


def _auxiliary(loop: Loop) -> tuple[torch.nn.Module, torch.optim.Optimizer] | None:
    """The objective's auxiliary modules and their optimizer, as the checkpoint holds them."""
    modules = loop.objective.auxiliary_modules()
    optimizer = loop.objective.auxiliary_optimizer()
    return None if modules is None or optimizer is None else (modules, optimizer)


def _rng_states(device: torch.device, ctx: dist.Context) -> dict[str, torch.Tensor]:
    """Every rank's torch (and CUDA) RNG state, gathered on each rank."""
    states = {f"torch.{r}": s
              for r, s in enumerate(dist.all_gather_bytes(torch.get_rng_state(), ctx))}
    if device.type == "cuda":
        states.update({f"cuda.{r}": s for r, s in
                       enumerate(dist.all_gather_bytes(torch.cuda.get_rng_state(), ctx))})
    return states


def _set_torch_rng(state: TrainState, ctx: dist.Context, seed: int) -> None:
    saved = state.tensors.get(f"torch.{ctx.rank}")
    if saved is not None and state.world_size == ctx.world_size:
        torch.set_rng_state(saved)
        if f"cuda.{ctx.rank}" in state.tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(state.tensors[f"cuda.{ctx.rank}"])
    else:  # another world size: continue with fresh noise (not bit-exact)
        torch.manual_seed(derived_seed(seed, state.epoch, ctx.rank, state.batch))


# ==================================================================== schedule, validation
def _hold_out(x: Any, n_val: int) -> tuple[Any, Any]:
    """Split off the last ``n_val`` rows of ``x`` (views, so memory-mapped data stays mapped)."""
    if not n_val:
        return x, None
    if n_val >= len(x) - 1:
        raise VarfamError(
            f"--validation {n_val} leaves too few training examples (the data has {len(x)}); "
            "use a smaller validation set"
        )
    return split_rows(x, len(x) - n_val)


def _progress(cfg: TrainConfig, epoch: int, elapsed: float) -> float:
    """How far training is at the start of ``epoch``, in [0, 1]: the fraction of the epochs
    or, where a time limit is set and comes first, of the time limit."""
    fraction = epoch / cfg.epochs
    if cfg.time_limit is not None:
        fraction = max(fraction, elapsed / (60.0 * cfg.time_limit))
    return min(fraction, 1.0)


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


# ==================================================================== helpers
def _adam(model: VAE, lr: float) -> torch.optim.Adam:
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


def _max_over_ranks(value: int, loop: Loop) -> int:
    """The largest value over ranks (a signal or flag any rank raised): all ranks stop together."""
    ctx = loop.env.ctx
    if not ctx.distributed:
        return value
    flag = dist.all_reduce_max(torch.tensor([float(value)], device=loop.env.device), ctx)
    return int(flag[0])


def _evaluate(model: VAE, src: BatchSource, labels: torch.Tensor | None = None) -> dict[str, float]:
    """Test ELBO and its terms (nats per example) over a batch source; ``labels``: those of
    a model conditioned on labels (then also the accuracy of a classifier q(y|x))."""
    whole = src.whole()
    if whole is not None:
        return evaluate_elbo(model, whole, y=labels)
    sums: dict[str, float] = {}
    for i, chunk in enumerate(src.chunks(_EVAL_CHUNK)):
        rows = None if labels is None else labels[i * _EVAL_CHUNK : (i + 1) * _EVAL_CHUNK]
        part = evaluate_elbo(model, chunk, y=rows)
        for k, v in part.items():  # weighted by rows: test labels are never hidden
            sums[k] = sums.get(k, 0.0) + v * chunk.shape[0]
    return {k: v / len(src) for k, v in sums.items()}


def _bound(model: VAE, src: BatchSource, k: int, seed: int) -> float:
    """The mean importance-weighted bound L_k (nats per example) over a batch source, with
    draws fixed by ``seed`` (the random state is left as it was)."""
    total = 0.0
    for chunk in src.chunks(_EVAL_CHUNK):
        total += float(importance_sampling(model, chunk, k, seed=seed).log_likelihood.sum())
    return total / len(src)


def _nonfinite(loss: torch.Tensor, ctx: dist.Context) -> bool:
    """Whether the loss is non-finite on any rank (one host sync; used by skip_nonfinite)."""
    flag = (~torch.isfinite(loss.detach())).float().reshape(1)
    return bool(dist.all_reduce_max(flag, ctx))


def _nonfinite_error(value: float, batch: int, state: TrainState, loop: Loop) -> VarfamError:
    step = state.step - (state.batch - batch)
    run_dir = loop.env.run_dir
    kept = f"; the last good checkpoint is kept in {run_dir}" if run_dir is not None else ""
    return VarfamError(
        f"the loss became {value if value == value else 'nan'} at epoch {state.epoch + 1}, step "
        f"{step + 1} (batch {batch + 1} of {loop.n_batches}); likely a learning rate too high or "
        "data the likelihood cannot model (try a lower --lr, --precision fp32, or "
        f"--skip-nonfinite to skip such batches){kept}"
    )


def _interrupted(signum: int, state: TrainState, run_dir: Path | None) -> TrainingInterrupted:
    """The error for a stop after ``state.epoch`` epochs and ``state.batch`` more batches."""
    name = signal.Signals(signum).name
    where = (f"after epoch {state.epoch}" if state.batch == 0
             else f"in epoch {state.epoch + 1} after {state.batch} batches")
    saved = (
        f"; its state is saved: resume with `varfam train --resume {run_dir}`"
        if run_dir is not None
        else "; nothing was saved (no run folder)"
    )
    return TrainingInterrupted(
        f"training stopped by {name} {where} (step {state.step}){saved}", signum
    )


def _rewrite_metrics(run_dir: Path, history: list[dict[str, Any]], epoch: int) -> None:
    """Keep ``metrics.jsonl`` consistent with the checkpoint.

    Epoch lines after the checkpoint's epoch (a kill between the writes) are
    dropped, lines the kill prevented are restored from the checkpoint, and
    other lines (``varfam eval`` results) are kept in place.
    """
    lines = [r for r in read_records(run_dir) if "kind" in r or 0 < r.get("epoch", 0) <= epoch]
    logged = {r["epoch"] for r in lines if "kind" not in r}
    write_records(run_dir, lines + [r for r in history if r["epoch"] not in logged])


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
def _no_distribution_validation(compiled: bool = False) -> Iterator[None]:
    """Skip torch.distributions' argument checks (a host sync each) while training.

    A compiled run leaves them off. The first ``torch.compile`` of a process switches
    them off for good (dynamo's one-time ``TorchPatcher.patch``) and dynamo then assumes
    they stay off; switched back on, every ``Distribution`` built in a later compiled
    graph calls ``constraints.is_dependent``, which dynamo refuses to trace: graph
    breaks (4 in the VampPrior's IWAE-DReG step, 11 to 19 in the bf16 one), and
    DReG's hook on ``z`` in another piece than ``z`` (issue 26).
    """
    old = Distribution._validate_args
    Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        if not compiled:
            Distribution.set_default_validate_args(old)
