"""Gaussian families: the textbook diagonal Gaussian."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from ..registry import FAMILIES
from .base import Family

__all__ = ["DiagonalGaussian", "positive_scale"]


def positive_scale(raw: Tensor, min_scale: float = 1e-5) -> Tensor:
    """Map an unconstrained tensor to a positive scale with ``exp(raw / 2)``.

    ``raw`` is a log-variance, as in the classic VAE example; the result is
    clamped below by ``min_scale`` to keep ``log_prob`` finite in low precision.
    """
    return torch.exp(0.5 * raw).clamp_min(min_scale)


@FAMILIES.register(
    "diagonal",
    "diagonal Gaussian N(mu, diag(sigma^2)): the textbook VAE, z = mu + sigma * eps",
    "Kingma & Welling 2014, Auto-Encoding Variational Bayes",
)
class DiagonalGaussian(Family):
    """q(z|x) = N(loc(h), diag(scale(h)^2)); two linear heads (mean and log-variance).

    >>> fam = DiagonalGaussian(400, 20)
    >>> q = fam(torch.zeros(3, 400))
    >>> q.rsample().shape, q.log_prob(q.rsample()).shape
    (torch.Size([3, 20]), torch.Size([3]))
    """

    def __init__(self, feature_dim: int, latent_dim: int) -> None:
        super().__init__(feature_dim, latent_dim)
        self.loc = nn.Linear(feature_dim, latent_dim)
        self.log_var = nn.Linear(feature_dim, latent_dim)

    def forward(self, h: Tensor) -> Distribution:
        return Independent(Normal(self.loc(h), positive_scale(self.log_var(h))), 1)

    def location(self, h: Tensor) -> Tensor:
        return self.loc(h)

