"""Training callbacks: everything that watches or reacts to training.

The loop in :mod:`varfam.train` owns the order of training (step, evaluate,
checkpoint, stop); a :class:`Callback` is told what happened and may add to the
epoch's metrics. The progress display, the ``metrics.jsonl`` writer, the run
folder's pictures and report, and the experiment trackers
(:mod:`varfam.training.trackers`) are callbacks too. Under ``torchrun`` only rank 0 calls
them.

The :class:`~varfam.training.loop.TrainState` a callback receives is exactly what
``checkpoint.safetensors`` holds; callbacks must not change it.

A custom metric is a callback that adds a key to the epoch's metrics; the key
then reaches ``metrics.jsonl`` and every tracker:

>>> import torch, varfam
>>> class WeightNorm(varfam.Callback):
...     def on_train_start(self, run):
...         self.model = run.model
...     def on_epoch_end(self, state, metrics):
...         metrics["weight_norm"] = sum(float(p.detach().norm()) for p in self.model.parameters())
>>> data = varfam.data.split(torch.rand(64, 1, 8, 8), None, n_test=16, seed=0, name="toy")
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> result = varfam.train(model, data, epochs=1, callbacks=[WeightNorm()])
>>> "weight_norm" in result.history[-1]
True
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from varfam.parts import overrides
from varfam.runs.metrics import append_record

if TYPE_CHECKING:  # pragma: no cover
    from varfam.config import TrainConfig
    from varfam.data import Dataset
    from varfam.model import VAE
    from varfam.training.state import TrainResult, TrainState

__all__ = [
    "Callback",
    "CallbackList",
    "TrainingRun",
    "ProgressDisplay",
    "Announce",
    "MetricsFile",
]


@dataclass
class TrainingRun:
    """What a callback learns when training starts.

    ``model`` is the model being trained (on its device); ``data`` the dataset;
    ``config`` the resolved :class:`~varfam.config.TrainConfig`; ``run_dir`` the
    run folder or ``None``; ``batches_per_epoch`` the steps in one epoch;
    ``start_epoch`` the epochs already done (more than 0 when resumed).
    """

    model: VAE
    data: Dataset
    config: TrainConfig
    run_dir: Path | None
    batches_per_epoch: int
    start_epoch: int
    log_image: Callable[[TrainState, str, Path], None]

    @property
    def resumed(self) -> bool:
        return self.start_epoch > 0


class Callback:
    """Base class of training callbacks: every method is a no-op; override what you need.

    The loop calls, in order: :meth:`on_train_start` once; per epoch
    :meth:`on_epoch_start`, :meth:`on_step_end` after every optimizer step, and
    :meth:`on_epoch_end` after the epoch's evaluation and before its checkpoint;
    :meth:`on_images` for each picture written; :meth:`on_train_end` once, after
    the final weights are chosen. Training interrupted by a signal or an error
    ends without :meth:`on_train_end`.
    """

    def on_train_start(self, run: TrainingRun) -> None:
        """Training begins (or resumes at ``run.start_epoch``)."""

    def on_epoch_start(self, state: TrainState) -> None:
        """Epoch ``state.epoch + 1`` begins at batch ``state.batch`` (not 0 when resumed)."""

    def on_step_end(self, state: TrainState) -> None:
        """One optimizer step is done (``state.step`` counts them; ``state.batch`` in epoch)."""

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        """Epoch ``state.epoch`` is done; ``metrics`` is its line of ``metrics.jsonl``.

        Keys added here reach ``metrics.jsonl``, the history and every tracker
        called after this callback (user callbacks come before the built-in ones).
        """

    def on_images(self, state: TrainState, name: str, path: Path) -> None:
        """A picture of the run (``samples``, ``reconstructions`` …) was written as PNG."""

    def on_train_end(self, result: TrainResult) -> None:
        """Training finished; ``result.model`` holds the final (chosen) weights."""


class CallbackList(Callback):
    """Calls each callback in order; what the loop holds."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = list(callbacks)
        for c in self.callbacks:
            if not isinstance(c, Callback):
                raise TypeError(f"callbacks must be varfam.Callback instances, got {c!r}")

    def on_train_start(self, run: TrainingRun) -> None:
        for c in self.callbacks:
            c.on_train_start(run)

    def on_epoch_start(self, state: TrainState) -> None:
        for c in self.callbacks:
            c.on_epoch_start(state)

    def on_step_end(self, state: TrainState) -> None:
        for c in self.callbacks:
            c.on_step_end(state)

    def step_end_hooks(self) -> list[Callable[[TrainState], None]]:
        """The ``on_step_end`` methods that do something, in order: the training loop asks
        once per epoch, so that a step calls no callback that does nothing."""
        return [c.on_step_end for c in self.callbacks
                if overrides(c.on_step_end, Callback.on_step_end)]

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        for c in self.callbacks:
            c.on_epoch_end(state, metrics)

    def on_images(self, state: TrainState, name: str, path: Path) -> None:
        for c in self.callbacks:
            c.on_images(state, name, path)

    def on_train_end(self, result: TrainResult) -> None:
        for c in self.callbacks:
            c.on_train_end(result)


# ---------------------------------------------------------------- built-in callbacks
def epoch_line(metrics: dict[str, Any], epochs: int) -> str:
    """The one line printed per epoch: train loss, test ELBO (when scored), speed."""
    test = metrics.get("test_elbo")
    skipped = metrics.get("skipped_batches", 0)
    return (
        f"epoch {metrics['epoch']:3d}/{epochs}  train loss {metrics['train_loss']:9.3f}  "
        + (f"test ELBO {test:9.3f}  " if test is not None else " " * 20)
        + f"{metrics.get('samples_per_s', float('nan')):8.0f} ex/s"
        + (f"  skipped {skipped}" if skipped else "")
    )


class ProgressDisplay(Callback):
    """A progress bar per epoch on a terminal, and one line per epoch.

    ``bar``: draw tqdm bars; ``None`` (default) draws them only when ``stream`` is a
    terminal. Without bars nothing but the epoch lines is written, so logs that are
    not a terminal (CI, ``nohup``, captured notebook output) hold no ``\\r`` updates.
    """

    def __init__(self, bar: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.bar = bar
        self._tqdm: Any = None
        self.epochs = 0
        self.batches = 0

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def on_train_start(self, run: TrainingRun) -> None:
        self.epochs, self.batches = run.config.epochs, run.batches_per_epoch
        if self.bar is None:
            isatty = getattr(self._out(), "isatty", None)
            self.bar = bool(isatty and isatty())

    def on_epoch_start(self, state: TrainState) -> None:
        if self.bar:
            from tqdm.auto import tqdm

            self._tqdm = tqdm(total=self.batches, initial=state.batch, leave=False,
                              desc=f"epoch {state.epoch + 1}/{self.epochs}", unit="batch",
                              file=self._out())

    def on_step_end(self, state: TrainState) -> None:
        if self._tqdm is not None:
            self._tqdm.update(1)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        line = epoch_line(metrics, self.epochs)
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        print(line, file=self._out(), flush=True)


class Announce(Callback):
    """Prints ``text`` to stderr when training starts (after every check has passed);
    ``text`` may be a function of the :class:`TrainingRun` that returns it."""

    def __init__(self, text: str | Callable[[TrainingRun], str]) -> None:
        self.text = text

    def on_train_start(self, run: TrainingRun) -> None:
        text = self.text if isinstance(self.text, str) else self.text(run)
        print(text, file=sys.stderr, flush=True)


class MetricsFile(Callback):
    """Appends each epoch's metrics to ``RUN/metrics.jsonl`` (the trainer keeps the file
    consistent with the checkpoint when a run resumes)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        append_record(self.run_dir, metrics)


def builtin_callbacks(
    run_dir: Path | None, progress: bool, trackers: Sequence[Callback]
) -> list[Callback]:
    """The callbacks the trainer adds after the user's: display, metrics file, trackers."""
    out: list[Callback] = []
    if progress:
        out.append(ProgressDisplay())
    if run_dir is not None:
        out.append(MetricsFile(run_dir))
    return out + list(trackers)
