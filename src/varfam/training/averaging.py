"""An exponential moving average of a model's weights (Polyak–Ruppert averaging).

Built on :class:`torch.optim.swa_utils.AveragedModel` with its EMA update
(``p_avg ← decay · p_avg + (1 − decay) · p``, one fused ``lerp`` over all
parameters per step; the first update copies the weights). Buffers are not
averaged: they are copied from the training model whenever the average is read,
so state such as an annealed temperature is the current one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of ``model``'s parameters with ``decay`` per :meth:`update`.

    ``decay`` in (0, 1): the average spans roughly ``1 / (1 − decay)`` steps.
    """

    def __init__(self, model: VAE, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))

    @property
    def steps(self) -> int:
        """How many updates the average has seen."""
        return int(self.averaged.n_averaged)

    @torch.no_grad()
    def update(self, model: VAE) -> None:
        """Fold ``model``'s current parameters into the average (after an optimizer step)."""
        self.averaged.update_parameters(model)

    @torch.no_grad()
    def model(self, source: VAE) -> VAE:
        """The averaged model, with ``source``'s buffers (before any update: ``source``'s copy)."""
        module = self.averaged.module
        for mine, theirs in zip(module.buffers(), source.buffers(), strict=True):
            mine.copy_(theirs)
        if self.steps == 0:
            for mine, theirs in zip(module.parameters(), source.parameters(), strict=True):
                mine.copy_(theirs)
        module.train(source.training)
        return module

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights and the update count (for checkpoints)."""
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.averaged.load_state_dict(state)
