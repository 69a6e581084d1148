"""``elbo``: the negative evidence lower bound ``-(E_q[log p(x|z)] - KL(q(z|x) || p(z)))``.

Estimated as the mean of K log-weights ``log p(x|z_k) + log p(z_k) - log q(z_k|x)``,
``z_k ~ q(z|x)`` (unbiased for the ELBO), from the same sampler as ``nll``
(:func:`varfam.evaluation.bounds.importance_sampling`). It is ``nll`` plus the KL from
q(z|x) to the true posterior, so it also flags inputs the encoder maps badly.

>>> import torch, varfam
>>> from varfam.evaluation.scores.nll import NegativeLogLikelihood
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> x = torch.rand(3, 1, 8, 8).round()
>>> bool((NegativeElbo(k=10)(model, x) >= NegativeLogLikelihood(k=10)(model, x)).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from varfam.errors import VarfamError
from varfam.evaluation.bounds import importance_sampling
from varfam.evaluation.scores.base import Score, check_positive
from varfam.registry import SCORES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["NegativeElbo"]


@SCORES.register(
    "elbo",
    "-ELBO, the mean of k log-weights (option k, default 10)",
    "Kingma & Welling 2014, Auto-Encoding Variational Bayes",
)
@dataclass(kw_only=True)
class NegativeElbo(Score):
    """``-ELBO`` per row, nats, averaged over ``k`` draws of z (see the module doc)."""

    k: int = 10
    name = "elbo"
    supports_labels = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.k, "score option k")

    def compute(self, model: VAE, x: Tensor, y: Tensor | None) -> Tensor:
        if model.uses_labels and y is None:
            raise VarfamError(
                "score 'elbo' of a model conditioned on labels needs the rows' labels (y); "
                "nll sums them out where the model has a classifier"
            )
        res = importance_sampling(model, x, self.k, memory_mb=self.memory_mb, seed=self.seed,
                                  y=y if model.uses_labels else None)
        return -res.elbo
