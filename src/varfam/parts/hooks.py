"""The lifecycle hooks that the trainer calls on every part of a model.

A family, a prior and a likelihood each inherit :class:`TrainingHooks`, so the
training loop calls the hooks on every part without asking whether the part has
them; a part that takes part in a schedule overrides the hook it needs.

>>> from varfam.priors import StandardNormal
>>> StandardNormal(2, (1, 8, 8)).set_progress(0.5)  # a part with no schedule: nothing changes
False
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["TrainingHooks", "overrides"]


class TrainingHooks:
    """No-op hooks: ``set_epoch`` every step, ``set_progress`` every epoch."""

    def set_epoch(self, epoch: float) -> None:
        """Told the (fractional) epoch before every training step, e.g. for temperature
        annealing. ``epoch`` counts from 0; 1.5 is half-way through the second epoch."""

    def set_progress(self, progress: float) -> bool:
        """Told the schedule's progress in [0, 1] at the start of every epoch (the same
        fraction the cosine learning rate uses). Return True when that changed the set of
        parameters that receive gradients (a part joining training part-way)."""
        return False



def overrides(method: Callable[..., Any], base: Callable[..., Any]) -> bool:
    """Whether the bound ``method`` may do something: it is not the no-op function ``base``
    (e.g. ``TrainingHooks.set_epoch``), neither through its class nor set on its object.
    The training loop asks once per epoch, so that a step calls no hook that does nothing.

    >>> from varfam.priors import StandardNormal
    >>> overrides(StandardNormal(2, (1, 8, 8)).set_epoch, TrainingHooks.set_epoch)
    False
    """
    return getattr(method, "__func__", None) is not base
