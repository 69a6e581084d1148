"""The state of a training run: what ``checkpoint.safetensors`` holds and ``--resume`` restores.

:class:`TrainState` is one object: the position (epoch, batch within the epoch,
step), the clocks, the best validation ELBO so far, the history of epoch
metrics, and, when training stopped in mid-epoch, the epoch's partial sums and
every RNG stream. Callbacks see this same object; the checkpoint stores exactly
its fields (numbers and history as JSON metadata, tensors as tensors).

>>> s = TrainState(epoch=2, step=20, history=[{"epoch": 1}, {"epoch": 2}])
>>> info, tensors = s.to_checkpoint(world_size=1)
>>> TrainState.from_checkpoint(info, tensors) == s
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE
    from varfam.objectives import Objective

__all__ = ["TrainState", "TrainResult"]


@dataclass
class TrainState:
    """Where training is; every field is saved in the checkpoint.

    - ``epoch``: epochs completed; ``batch``: batches done of the next epoch (0 at an
      epoch boundary); ``step``: optimizer steps so far (skipped batches included).
    - ``wall_time``: seconds spent in training steps; ``elapsed``: seconds since
      training began, evaluation included (what ``time_limit`` counts);
      ``seconds``, ``skipped``: the current epoch's step time and skipped batches.
    - ``best_validation`` / ``best_epoch``: the best validation ELBO (nats) and its
      epoch (``None`` / 0 without a validation set).
    - ``history``: one metrics dict per completed epoch (``metrics.jsonl``'s lines).
    - ``world_size``: the number of processes that saved it.
    - ``tensors``: in mid-epoch only: the data order's generator state (``data``),
      each rank's torch (and CUDA) RNG state (``torch.R``, ``cuda.R``), and the
      epoch's per-batch ``losses`` and ``counted`` flags.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    wall_time: float = 0.0
    elapsed: float = 0.0
    seconds: float = 0.0
    skipped: int = 0
    best_validation: float | None = None
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    world_size: int = 1
    tensors: dict[str, torch.Tensor] = field(default_factory=dict, compare=False)

    def to_checkpoint(self, world_size: int) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(JSON-able info, tensors) for :func:`varfam.runs.checkpoint.save_checkpoint`."""
        self.world_size = world_size
        info = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "tensors"}
        return info, {k: v.detach().cpu() for k, v in self.tensors.items()}

    @classmethod
    def from_checkpoint(cls, info: dict[str, Any], tensors: dict[str, torch.Tensor]) -> TrainState:
        """The state saved by :meth:`to_checkpoint` (or by an older varfam, which saved
        no ``elapsed`` or best-so-far: they are derived from the history)."""
        known = {f.name for f in fields(cls)} - {"tensors"}
        state = cls(**{k: v for k, v in info.items() if k in known})
        state.history = list(state.history)
        if "elapsed" not in info:
            last = state.history[-1] if state.history else {}
            state.elapsed = float(last.get("elapsed", state.wall_time))
        if "best_epoch" not in info:
            scored = [r for r in state.history if r.get("validation_elbo") is not None]
            if scored:
                top = max(scored, key=lambda r: r["validation_elbo"])
                state.best_validation, state.best_epoch = top["validation_elbo"], top["epoch"]
        state.tensors = dict(tensors) if state.batch else {}
        return state

    def improves(self, validation_elbo: float) -> bool:
        """Whether ``validation_elbo`` beats the best so far (non-finite never does)."""
        if not math.isfinite(validation_elbo):
            return False
        return self.best_validation is None or validation_elbo > self.best_validation


@dataclass
class TrainResult:
    """The trained model, one metrics dict per epoch, the run folder (if any), the final state,
    and the objective (with the auxiliary modules it trained, FactorVAE's discriminator)."""

    model: VAE
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    state: TrainState = field(default_factory=TrainState)
    objective: Objective | None = None
