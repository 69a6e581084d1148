"""``nll``: the importance-sampled negative log-likelihood ``-log p(x)``.

``log p(x) ≈ logsumexp_k log w_k - log K`` with ``log w_k = log p(x|z_k) + log p(z_k) -
log q(z_k|x)``, ``z_k ~ q(z|x)`` (Burda, Grosse & Salakhutdinov 2016, "Importance
Weighted Autoencoders"), computed by :func:`varfam.evaluation.bounds.importance_sampling`.
The plain likelihood score: it is known to fail on some out-of-distribution pairs,
where simple inputs (MNIST digits under a Fashion-MNIST model) get *higher* likelihood
than the training data (Nalisnick, Matsukawa, Teh, Gorur & Lakshminarayanan 2019, "Do
Deep Generative Models Know What They Don't Know?"); ``ratio``, ``complexity`` and
``regret`` correct it.

>>> import torch, varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> NegativeLogLikelihood(k=10)(model, torch.rand(3, 1, 8, 8).round()).shape
torch.Size([3])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from varfam.errors import VarfamError
from varfam.evaluation.bounds import importance_sampling, marginal_importance_sampling
from varfam.evaluation.scores.base import Score, check_positive
from varfam.registry import SCORES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["NegativeLogLikelihood", "log_likelihood"]


def log_likelihood(model: VAE, x: Tensor, y: Tensor | None, k: int, *, memory_mb: float = 8.0,
                   seed: int | None = None) -> Tensor:
    """``log p(x)`` (or ``log p(x|y)`` with labels ``y``) per row of ``x``: (N,) float64 nats.

    A model conditioned on labels needs ``y``, unless it has a classifier q(y|x): then y
    is summed out exactly (:func:`~varfam.evaluation.bounds.marginal_importance_sampling`).
    """
    if model.uses_labels and y is None:
        if not model.has_classifier:
            raise VarfamError(
                "this model is conditioned on labels: give the rows' labels (y) to score them"
            )
        return marginal_importance_sampling(model, x, k, memory_mb=memory_mb, seed=seed)
    return importance_sampling(
        model, x, k, memory_mb=memory_mb, seed=seed, y=y if model.uses_labels else None
    ).log_likelihood


@SCORES.register(
    "nll",
    "-log p(x), importance-sampled with k samples (option k, default 100); fails on "
    "simple out-of-distribution inputs",
    "Burda, Grosse & Salakhutdinov 2016, Importance Weighted Autoencoders",
)
@dataclass(kw_only=True)
class NegativeLogLikelihood(Score):
    """``-log p(x)`` per row, nats, with ``k`` importance samples (see the module doc)."""

    k: int = 100
    name = "nll"
    supports_labels = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.k, "score option k")

    def compute(self, model: VAE, x: Tensor, y: Tensor | None) -> Tensor:
        return -log_likelihood(model, x, y, self.k, memory_mb=self.memory_mb, seed=self.seed)
