"""Training objectives: functions of the model's parts, not model subclasses.

An objective is called as ``objective(model, x, epoch=e)`` and returns an
:class:`ObjectiveResult` whose ``loss`` is minimised (a scalar, mean over the
batch) and whose per-example terms are in nats.

The choice between an analytic KL and a Monte Carlo estimate is made in one
place, :func:`kl_term`, and every objective and evaluation uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor
from torch.distributions import Distribution, Independent, kl_divergence

from .registry import OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover
    from .model import VAE

__all__ = ["ObjectiveResult", "Objective", "Elbo", "kl_term", "kl_per_dimension"]


def kl_term(q: Distribution, p: Distribution, z: Tensor) -> Tensor:
    """KL(q || p) per example, shape ``z.shape[:-1]``, in nats.

    Uses the closed form registered with ``torch.distributions.kl`` where one
    exists; otherwise the single-sample Monte Carlo estimate
    ``log q(z) - log p(z)`` on the same ``z`` that feeds the decoder.
    """
    try:
        kl = kl_divergence(q, p)
    except NotImplementedError:
        return q.log_prob(z) - p.log_prob(z)
    return kl.expand(z.shape[:-1])


def kl_per_dimension(q: Distribution, p: Distribution) -> Tensor | None:
    """Closed-form KL per latent dimension, shape (B, D), when q and p factorize.

    Returns ``None`` when either is not a product of independent dimensions with
    a registered KL (then only the total KL is defined).
    """
    if not (isinstance(q, Independent) and isinstance(p, Independent)):
        return None
    if q.reinterpreted_batch_ndims != 1 or p.reinterpreted_batch_ndims != 1:
        return None
    try:
        return kl_divergence(q.base_dist, p.base_dist)
    except NotImplementedError:
        return None


@dataclass
class ObjectiveResult:
    """What an objective returns. ``loss`` is a scalar; the rest are (B,) tensors in nats."""

    loss: Tensor
    elbo: Tensor
    reconstruction: Tensor
    kl: Tensor


class Objective:
    """Base class: ``objective(model, x, epoch=...)`` → :class:`ObjectiveResult`."""

    def __call__(self, model: VAE, x: Tensor, epoch: float = 0.0) -> ObjectiveResult:
        raise NotImplementedError  # pragma: no cover


@OBJECTIVES.register(
    "elbo",
    "evidence lower bound with beta, KL warm-up and free bits",
    "Kingma & Welling 2014; Higgins et al. 2017 (beta); Kingma et al. 2016 (free bits)",
)
class Elbo(Objective):
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)), one reparameterized sample.

    Options: ``beta`` weights the KL (β-VAE); ``warmup_epochs`` ramps that weight
    linearly from 0 over the first epochs; ``free_bits`` (nats per dimension)
    stops the KL of a dimension from being pushed below that floor (the batch-mean
    KL per dimension is clamped, as in Kingma et al. 2016). The reported ``elbo``
    is always the plain, unweighted bound.
    """

    def __init__(
        self, *, beta: float = 1.0, warmup_epochs: float = 0.0, free_bits: float = 0.0
    ) -> None:
        if beta < 0 or warmup_epochs < 0 or free_bits < 0:
            raise ValueError("beta, warmup_epochs and free_bits must be non-negative")
        self.beta = beta
        self.warmup_epochs = warmup_epochs
        self.free_bits = free_bits

    def kl_weight(self, epoch: float) -> float:
        if self.warmup_epochs <= 0:
            return self.beta
        return self.beta * min(1.0, epoch / self.warmup_epochs)

    def __call__(self, model: VAE, x: Tensor, epoch: float = 0.0) -> ObjectiveResult:
        q = model.encode(x)
        z = q.rsample()
        recon = model.decode(z).log_prob(x)
        p = model.prior_distribution()
        kl = kl_term(q, p, z)
        kl_for_loss = kl
        if self.free_bits > 0:
            per_dim = kl_per_dimension(q, p)
            if per_dim is not None:
                kl_for_loss = per_dim.mean(0).clamp_min(self.free_bits).sum().expand_as(kl)
            else:  # a non-factorized q: the floor applies to the total KL
                kl_for_loss = kl.mean().clamp_min(self.free_bits * z.shape[-1]).expand_as(kl)
        loss = -(recon - self.kl_weight(epoch) * kl_for_loss).mean()
        return ObjectiveResult(loss, recon - kl, recon, kl)

