"""The ELBO with an annealed KL capacity: ``log p(x|z) - γ |KL - C(epoch)|``.

Christopher P. Burgess, Irina Higgins, Arka Pal, Loic Matthey, Nick Watters, Guillaume
Desjardins, Alexander Lerchner, "Understanding disentangling in β-VAE", 2018. The KL
is held near a target C that rises linearly from 0 to ``capacity`` nats over
``capacity_epochs`` epochs (fractional epochs, as the loop passes them), then stays:

    C(epoch) = capacity · min(1, epoch / capacity_epochs).

The paper's dSprites setting is γ = 1000 and C rising to 25 nats over 100,000 steps
of batch 64 (about 10 epochs of the 663,552 training images here); the defaults are
those γ and C over 10 epochs.

A separate objective rather than options of ``elbo``: the penalty is a different
function of the KL (an absolute distance to a moving target, weighted by γ), not a
weight on it, so ``elbo``'s β, warm-up and free bits would each be a second, competing
control of the same KL; as one objective it has no such combinations to refuse. It
composes with every family, prior and likelihood (the KL is :func:`kl_term`'s, closed
form where registered and Monte Carlo otherwise). The KL in ``|KL - C|`` is the
batch mean, as in the paper's code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from varfam.errors import VarfamError
from varfam.objectives.base import Objective, kl_term, non_negative
from varfam.objectives.terms import Terms
from varfam.registry import OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["Capacity"]


@OBJECTIVES.register(
    "capacity",
    "the ELBO with an annealed KL capacity, log p(x|z) - gamma |KL - C|, C rising linearly to "
    "option capacity (nats, default 25) over capacity_epochs (default 10); gamma default 1000",
    "Burgess, Higgins, Pal, Matthey, Watters, Desjardins & Lerchner 2018, Understanding "
    "disentangling in beta-VAE",
)
class Capacity(Objective):
    """Loss ``-mean_B log p(x|z) + γ |mean_B KL - C(epoch)|`` (module doc).

    >>> c = Capacity(capacity=20.0, capacity_epochs=10.0)
    >>> [c.target(e) for e in (0.0, 2.5, 10.0, 30.0)]
    [0.0, 5.0, 20.0, 20.0]
    """

    def __init__(
        self,
        *,
        capacity: float = 25.0,
        capacity_epochs: float = 10.0,
        gamma: float = 1000.0,
        alpha: float | None = None,
        labelled_share: float | None = None,
    ) -> None:
        non_negative("capacity", capacity=capacity, capacity_epochs=capacity_epochs, gamma=gamma)
        if isinstance(capacity_epochs, (int, float)) and capacity_epochs == 0 and capacity:
            raise VarfamError("capacity: option capacity_epochs must be positive (the epochs "
                              "over which C rises), got 0")
        self._labelled_options("capacity", alpha, labelled_share)
        self.capacity = float(capacity)
        self.capacity_epochs = float(capacity_epochs)
        self.gamma = float(gamma)

    def target(self, epoch: float | Tensor) -> float | Tensor:
        """C(epoch) in nats (a 0-d tensor for a 0-d tensor ``epoch``, as a compiled step)."""
        if self.capacity_epochs <= 0:
            return self.capacity
        ramp = epoch / self.capacity_epochs
        if isinstance(ramp, Tensor):
            return self.capacity * ramp.clamp(0.0, 1.0)
        return self.capacity * min(1.0, max(0.0, ramp))

    def terms(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> Terms:
        y = model.labels_of(x, y)
        q = model.encode(x, y)
        z = q.rsample()
        recon = model.decode(z, y).log_prob(x)
        kl = kl_term(q, model.prior_distribution(y), z)
        penalty = self.gamma * (kl.mean() - self.target(epoch)).abs()
        return Terms(recon - penalty, recon - kl, recon, kl)
