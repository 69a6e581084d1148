"""Heavy-tailed families: diagonal Laplace and diagonal Student-t.

Both are products over the D latent dimensions of a location-scale density with
heavier tails than the Gaussian, as ``Independent(..., 1)`` so that ``log_prob``
sums over dimensions. The scale head follows the diagonal Gaussian:
``scale = positive_scale(raw) = exp(raw / 2)`` floored at 1e-5.

KL to the standard prior: torch registers Laplace→Normal, so the ``laplace``
family gets an exact KL (Independent↔Independent reduces to it); Student-t has
none, so the objectives use Monte Carlo ``log q - log p`` for ``student``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Laplace, StudentT
from torch.nn.functional import softplus

from varfam.errors import VarfamError
from varfam.families.base import Family
from varfam.families.gaussian import positive_scale
from varfam.registry import FAMILIES

__all__ = ["MIN_LEARNED_DF", "DiagonalLaplace", "DiagonalStudentT"]

#: Floor on learned degrees of freedom: df > 2 keeps both mean and variance finite.
MIN_LEARNED_DF = 2.0


@FAMILIES.register(
    "laplace",
    "diagonal Laplace: z = loc + scale * (exponential-tailed noise), per dimension",
    "Kingma & Welling 2014, Auto-Encoding Variational Bayes, section 2.4 "
    "(location-scale reparameterization: Laplace, Student's t, ...)",
)
class DiagonalLaplace(Family):
    """q(z|x) = Π_d Laplace(z_d; loc_d(h), scale_d(h)); heads ``loc`` and ``raw_scale``.

    Density per dimension ``exp(-|z - loc| / scale) / (2 scale)``; mean ``loc``,
    variance ``2 scale²``. ``rsample`` is ``loc - scale·sign(u)·log(1 - 2|u|)``.

    >>> fam = DiagonalLaplace(16, 3)
    >>> q = fam(torch.zeros(5, 16))
    >>> q.rsample((2,)).shape, q.log_prob(q.rsample()).shape
    (torch.Size([2, 5, 3]), torch.Size([5]))
    """

    def __init__(self, feature_dim: int, latent_dim: int) -> None:
        super().__init__(feature_dim, latent_dim)
        self.loc = nn.Linear(feature_dim, latent_dim)
        self.raw_scale = nn.Linear(feature_dim, latent_dim)

    def forward(self, h: Tensor) -> Distribution:
        return Independent(Laplace(self.loc(h), positive_scale(self.raw_scale(h))), 1)

    def location(self, h: Tensor) -> Tensor:
        return self.loc(h)


@FAMILIES.register(
    "student",
    "diagonal Student-t with learned degrees of freedom (>= 2), or fixed with option df",
    "Kingma & Welling 2014, Auto-Encoding Variational Bayes, section 2.4; df gradients by "
    "Figurnov, Mohamed & Mnih 2018, Implicit Reparameterization Gradients",
)
class DiagonalStudentT(Family):
    """q(z|x) = Π_d t_{df_d}(z_d; loc_d(h), scale_d(h)); heads ``loc``, ``raw_scale``, ``raw_df``.

    Degrees of freedom: by default *learned* per dimension and example,
    ``df = 2 + softplus(raw_df(h))``, so ``df > 2`` and the mean (``loc``) and
    variance (``scale² df / (df - 2)``) exist. Giving the option ``df`` (a
    positive number) *fixes* it for every dimension and drops the ``raw_df`` head;
    with ``df <= 1`` the mean does not exist and :meth:`location` still returns
    ``loc`` (the median and mode). ``rsample`` is torch's ``Normal / sqrt(Chi2/df)``,
    reparameterized also in ``df`` through the implicit Gamma gradient.

    >>> fam = DiagonalStudentT(16, 3)
    >>> q = fam(torch.zeros(5, 16))
    >>> bool((q.base_dist.df > 2).all())
    True
    >>> DiagonalStudentT(16, 3, df=5.0)(torch.zeros(1, 16)).base_dist.df
    tensor([[5., 5., 5.]])
    """

    def __init__(self, feature_dim: int, latent_dim: int, *, df: float | None = None) -> None:
        super().__init__(feature_dim, latent_dim)
        bad = isinstance(df, bool) or not isinstance(df, (int, float)) or not df > 0
        if df is not None and bad:
            raise VarfamError(
                f"student family: df must be a positive number (or leave it out to learn it), "
                f"got {df!r}"
            )
        self.df = None if df is None else float(df)
        self.loc = nn.Linear(feature_dim, latent_dim)
        self.raw_scale = nn.Linear(feature_dim, latent_dim)
        self.raw_df = nn.Linear(feature_dim, latent_dim) if df is None else None

    def degrees_of_freedom(self, h: Tensor) -> Tensor:
        """Degrees of freedom, shape (B, D): learned (> 2) or the fixed option."""
        if self.raw_df is None:
            return torch.full(
                (*h.shape[:-1], self.latent_dim), self.df, dtype=h.dtype, device=h.device
            )
        return MIN_LEARNED_DF + softplus(self.raw_df(h))

    def forward(self, h: Tensor) -> Distribution:
        base = StudentT(self.degrees_of_freedom(h), self.loc(h), positive_scale(self.raw_scale(h)))
        return Independent(base, 1)

    def location(self, h: Tensor) -> Tensor:
        return self.loc(h)
