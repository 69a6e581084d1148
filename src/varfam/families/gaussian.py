"""Gaussian families: diagonal, full-covariance and low-rank-plus-diagonal.

All three are amortized: linear heads map the encoder features ``h`` (B, F) to
the parameters of q(z|x) over R^D. The scale parameterization is shared: a head
named ``log_var`` gives the diagonal through :func:`positive_scale`, so with its
extra heads at zero the ``full`` and ``lowrank`` families reduce exactly to the
``diagonal`` one.

Closed-form KLs from these families to a diagonal Gaussian prior
``Independent(Normal(mu, s), 1)`` (the standard prior among them) are registered
here with :func:`torch.distributions.kl.register_kl`; torch already has
MultivariateNormal↔MultivariateNormal and the LowRank pairs, but not these.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import (
    Distribution,
    Independent,
    LowRankMultivariateNormal,
    MultivariateNormal,
    Normal,
    register_kl,
)

from varfam.errors import VarfamError
from varfam.families.base import Family
from varfam.parts.normal import DiagonalNormal
from varfam.registry import FAMILIES

__all__ = [
    "DiagonalNormal",
    "DiagonalGaussian",
    "FullCovarianceGaussian",
    "LowRankGaussian",
    "kl_gaussian_diagonal",
    "positive_scale",
    "log_positive_scale",
]




def log_positive_scale(raw: Tensor, min_scale: float = 1e-5) -> Tensor:
    """``log`` of :func:`positive_scale`: ``max(raw / 2, log min_scale)``; no logarithm taken.

    The floor is ``torch.threshold`` (``v if v > c else c``: the same values as
    ``clamp_min(c)``), whose backward is one op where ``clamp_min``'s is three; the
    gradient is the same except at ``raw / 2 == c`` exactly, where it is 0, not 1.
    """
    floor = math.log(min_scale)
    return torch.threshold(0.5 * raw, floor, floor)


def positive_scale(raw: Tensor, min_scale: float = 1e-5) -> Tensor:
    """Map an unconstrained tensor to a positive scale with ``exp(raw / 2)``.

    ``raw`` is a log-variance, as in the classic VAE example; the result is
    clamped below by ``min_scale`` to keep ``log_prob`` finite in low precision.
    """
    return log_positive_scale(raw, min_scale).exp()


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
        return DiagonalNormal(self.loc(h), log_positive_scale(self.log_var(h)))

    def location(self, h: Tensor) -> Tensor:
        return self.loc(h)


@FAMILIES.register(
    "full",
    "full-covariance Gaussian N(mu, L L^T), L lower-triangular: z = mu + L eps",
    "Kingma & Welling 2014, Auto-Encoding Variational Bayes (appendix); "
    "Rezende, Mohamed & Wierstra 2014, Stochastic Backpropagation and Approximate "
    "Inference in Deep Generative Models",
)
class FullCovarianceGaussian(Family):
    """q(z|x) = N(loc(h), L(h) L(h)^T) as ``MultivariateNormal(loc, scale_tril=L)``.

    Heads: ``loc`` (D), ``log_var`` (D; the diagonal of L is
    ``positive_scale(log_var) = exp(log_var / 2)``, floored at 1e-5) and ``tril``
    (D(D-1)/2 free entries strictly below the diagonal of L). The covariance
    is unrestricted: every symmetric positive-definite matrix has such an L.

    >>> fam = FullCovarianceGaussian(16, 3)
    >>> q = fam(torch.zeros(5, 16))
    >>> q.scale_tril.shape, q.log_prob(q.rsample((2,))).shape
    (torch.Size([5, 3, 3]), torch.Size([2, 5]))
    """

    def __init__(self, feature_dim: int, latent_dim: int) -> None:
        super().__init__(feature_dim, latent_dim)
        self.loc = nn.Linear(feature_dim, latent_dim)
        self.log_var = nn.Linear(feature_dim, latent_dim)
        n_off = latent_dim * (latent_dim - 1) // 2
        self.tril = nn.Linear(feature_dim, n_off) if n_off else None
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)

    def scale_tril(self, h: Tensor) -> Tensor:
        """The Cholesky factor L(h), shape (B, D, D), lower-triangular, positive diagonal."""
        L = torch.diag_embed(positive_scale(self.log_var(h)))
        if self.tril is not None:
            off = torch.zeros_like(L)
            off[..., self._rows, self._cols] = self.tril(h)
            L = L + off
        return L

    def forward(self, h: Tensor) -> Distribution:
        return MultivariateNormal(self.loc(h), scale_tril=self.scale_tril(h))

    def location(self, h: Tensor) -> Tensor:
        return self.loc(h)


@FAMILIES.register(
    "lowrank",
    "low-rank-plus-diagonal Gaussian N(mu, F F^T + diag(d)), F of shape D x rank",
    "Rezende, Mohamed & Wierstra 2014, Stochastic Backpropagation and Approximate "
    "Inference in Deep Generative Models; Ong, Nott & Smith 2018, Gaussian variational "
    "approximation with a factor covariance structure",
)
class LowRankGaussian(Family):
    """q(z|x) = N(loc, F F^T + diag(d)) as ``LowRankMultivariateNormal``.

    Heads: ``loc`` (D), ``log_var`` (D; ``d = positive_scale(log_var)**2``) and
    ``cov_factor`` (D·rank entries of G, shape (B, D, rank)), with ``F = diag(√d) G``
    so that the capacitance ``I + GᵀG`` is well conditioned for any d. Option ``rank``
    (default 2) is the number of columns of F; cost is O(D·rank²) per density.

    >>> fam = LowRankGaussian(16, 6, rank=2)
    >>> q = fam(torch.zeros(5, 16))
    >>> q.cov_factor.shape, q.rsample().shape
    (torch.Size([5, 6, 2]), torch.Size([5, 6]))
    """

    def __init__(self, feature_dim: int, latent_dim: int, *, rank: int = 2) -> None:
        super().__init__(feature_dim, latent_dim)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise VarfamError(f"lowrank family: rank must be a positive integer, got {rank!r}")
        self.rank = rank
        self.loc = nn.Linear(feature_dim, latent_dim)
        self.log_var = nn.Linear(feature_dim, latent_dim)
        self.cov_factor = nn.Linear(feature_dim, latent_dim * rank)

    def forward(self, h: Tensor) -> Distribution:
        scale = positive_scale(self.log_var(h))
        # F = diag(sqrt d) G: the capacitance I + Fᵀ diag(1/d) F = I + GᵀG stays well
        # conditioned however small d gets (with a raw F it overflows fp32 and the
        # Cholesky factorization fails).
        factor = self.cov_factor(h).unflatten(-1, (self.latent_dim, self.rank))
        return LowRankMultivariateNormal(self.loc(h), scale.unsqueeze(-1) * factor, scale**2)

    def location(self, h: Tensor) -> Tensor:
        return self.loc(h)


# ------------------------------------------------------------------ closed-form KLs
def _diagonal_normal_params(p: Independent) -> tuple[Tensor, Tensor]:
    """(loc, scale) of ``Independent(Normal, 1)``; NotImplementedError for anything else.

    Raising NotImplementedError makes :func:`varfam.objectives.kl_term` fall back
    to Monte Carlo for priors that are Independent but not diagonal Gaussians.
    """
    if not isinstance(p.base_dist, Normal) or p.reinterpreted_batch_ndims != 1:
        raise NotImplementedError
    return p.base_dist.loc, p.base_dist.scale


def kl_gaussian_diagonal(
    loc: Tensor, var_diag: Tensor, logdet: Tensor, p_loc: Tensor, p_scale: Tensor
) -> Tensor:
    """KL(N(loc, Σ) || N(p_loc, diag(p_scale²))) in nats, summed over the last dim.

    Only the diagonal of Σ (``var_diag``) and ``logdet = log det Σ`` are needed:
    ``½ [tr(S⁻¹Σ) + (μ_p - μ)ᵀS⁻¹(μ_p - μ) - D + log det S - log det Σ]``.
    Shapes broadcast: (..., D) tensors and (...) ``logdet`` → (...).
    """
    p_var = p_scale**2
    D = loc.shape[-1]
    trace = (var_diag / p_var).sum(-1)
    maha = ((p_loc - loc) ** 2 / p_var).sum(-1)
    return 0.5 * (trace + maha - D + torch.log(p_var).sum(-1) - logdet)


@register_kl(MultivariateNormal, Independent)
def _kl_mvn_diagonal(q: MultivariateNormal, p: Independent) -> Tensor:
    p_loc, p_scale = _diagonal_normal_params(p)
    L = q.scale_tril
    var_diag = (L**2).sum(-1)
    logdet = 2 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1).abs()).sum(-1)
    return kl_gaussian_diagonal(q.loc, var_diag, logdet, p_loc, p_scale)


@register_kl(LowRankMultivariateNormal, Independent)
def _kl_lowrank_diagonal(q: LowRankMultivariateNormal, p: Independent) -> Tensor:
    p_loc, p_scale = _diagonal_normal_params(p)
    W, d = q.cov_factor, q.cov_diag
    var_diag = (W**2).sum(-1) + d
    # matrix determinant lemma: det(W Wᵀ + diag d) = det(diag d) · det(I + Wᵀ diag(1/d) W)
    eye = torch.eye(W.shape[-1], dtype=W.dtype, device=W.device)
    Wd = W / d.sqrt().unsqueeze(-1)  # G of the family's parameterization
    capacitance = eye + Wd.mT @ Wd
    chol = torch.linalg.cholesky(capacitance)
    logdet = torch.log(d).sum(-1) + 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return kl_gaussian_diagonal(q.loc, var_diag, logdet, p_loc, p_scale)

