"""What an objective computes: its per-example terms and its result, in nats."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["ObjectiveResult", "Terms"]


@dataclass
class ObjectiveResult:
    """What an objective returns. ``loss`` is a scalar; the rest are (B,) tensors in nats."""

    loss: Tensor
    elbo: Tensor
    reconstruction: Tensor
    kl: Tensor


@dataclass
class Terms:
    """An objective's per-example terms for a batch, each (B,) in nats.

    ``surrogate`` is what the loss maximizes (the loss is its negated batch mean) and
    carries the gradients; ``elbo``, ``reconstruction`` and ``kl`` are reported.
    ``negated``, where an objective has it without a negation, is ``-surrogate`` (the
    same values): the loss is then its batch mean, one autograd node fewer.
    """

    surrogate: Tensor
    elbo: Tensor
    reconstruction: Tensor
    kl: Tensor
    negated: Tensor | None = None
