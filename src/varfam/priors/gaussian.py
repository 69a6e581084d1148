"""Learned Gaussian priors: one diagonal Gaussian, or a mixture of K of them.

Both are fitted jointly with the VAE by the same objective. A learned diagonal
Gaussian keeps the closed-form KL to Gaussian families (torch's
Independent(Normal)↔Independent(Normal) rule and the rules in
``families/gaussian.py``); the mixture has none, so the objectives use the Monte
Carlo ``log q(z|x) - log p(z)`` (decided in :func:`varfam.objectives.kl_term`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from varfam.priors.base import Encode, Prior, positive_int
from varfam.registry import PRIORS

__all__ = ["LearnedGaussian", "GaussianMixturePrior"]


@PRIORS.register(
    "learned",
    "diagonal Gaussian N(loc, diag(scale^2)) with learned loc and scale (starts at N(0, I))",
    "Hoffman & Johnson 2016, ELBO surgery: yet another way to carve up the variational "
    "evidence lower bound (a learned prior moves towards the aggregate posterior)",
)
class LearnedGaussian(Prior):
    """p(z) = N(loc, diag(exp(log_scale)^2)); ``loc`` and ``log_scale`` are (D,) parameters.

    Starts as N(0, I). Shapes: ``log_prob`` of (..., D) → (...), nats.

    >>> p = LearnedGaussian(2, (1, 8, 8))()
    >>> p.batch_shape, p.event_shape
    (torch.Size([]), torch.Size([2]))
    """

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...]) -> None:
        super().__init__(latent_dim, data_shape)
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(latent_dim))

    def forward(self, encode: Encode | None = None) -> Distribution:
        return Independent(Normal(self.loc, self.log_scale.exp()), 1)


@PRIORS.register(
    "mog",
    "learned mixture of K diagonal Gaussians (option components, default 10)",
    "Dilokthanakul et al. 2016, Deep Unsupervised Clustering with Gaussian Mixture "
    "Variational Autoencoders; Tomczak & Welling 2018, VAE with a VampPrior (MoG baseline)",
)
class GaussianMixturePrior(Prior):
    """p(z) = Σ_k softmax(logits)_k N(loc_k, diag(exp(log_scale_k)^2)), K = ``components``.

    Parameters: ``logits`` (K,), ``loc`` (K, D) and ``log_scale`` (K, D). The means
    start as draws from N(0, I) and the scales at 1, so the components begin
    distinct (a symmetric start would keep them identical under gradient descent).
    A ``MixtureSameFamily``: ``sample`` draws a component, then a Gaussian.

    >>> p = GaussianMixturePrior(2, (1, 8, 8), components=3)()
    >>> p.log_prob(torch.zeros(4, 5, 2)).shape, p.sample((6,)).shape
    (torch.Size([4, 5]), torch.Size([6, 2]))
    """

    def __init__(
        self, latent_dim: int, data_shape: tuple[int, ...], *, components: int = 10
    ) -> None:
        super().__init__(latent_dim, data_shape)
        self.components = positive_int("mog prior", "components", components)
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(components, latent_dim))

    def forward(self, encode: Encode | None = None) -> Distribution:
        return MixtureSameFamily(
            Categorical(logits=self.logits),
            Independent(Normal(self.loc, self.log_scale.exp()), 1),
        )
