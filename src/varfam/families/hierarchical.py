"""Two stochastic layers: the hierarchical posterior q(z_top|x) q(z_bottom|x, z_top).

Tomczak & Welling 2018, "VAE with a VampPrior" (the HVAE of section 4): a latent
``z = (z_top, z_bottom)`` of ``D = D_top + D_bottom`` dimensions with

    q(z|x) = N(z_top; μ_t(h), diag σ_t(h)²) · N(z_bottom; μ_b(h, z_top), diag σ_b(h, z_top)²)

and, in the matching prior (:mod:`varfam.families.hierarchical_prior`),
``p(z) = p(z_top) · N(z_bottom; μ(z_top), diag σ(z_top)²)``. The decoder reads the
whole of ``z``. Both factors are exact Gaussians, so ``log_prob`` of any z is closed
form (no inverse, unlike IAF), and ``rsample`` is ancestral and reparameterized.

:class:`TwoLevelGaussian` is the distribution of both the posterior and the prior;
:class:`ConditionalGaussian` is the network of the conditional factor. For the
posterior, its first layer reads ``h`` and ``z_top``; the ``h`` part is projected
once per example and shared by all importance samples of ``z_top``, so each
sample costs one small layer of width ``hidden``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal, constraints

from varfam.errors import VarfamError
from varfam.families.base import Family
from varfam.families.gaussian import positive_scale
from varfam.parts import network_precision
from varfam.registry import FAMILIES

__all__ = ["ConditionalGaussian", "HierarchicalGaussian", "TwoLevelGaussian", "split_top"]

_SCALAR = torch.Size()

#: (loc, scale) of the bottom layer, each (..., D_bottom), for z_top (..., D_top).
Conditional = Callable[[Tensor], tuple[Tensor, Tensor]]


def split_top(owner: str, latent_dim: int, top: object) -> int:
    """The number of top-layer dimensions: ``top`` (``None``: ``latent_dim // 2``), checked.

    Both layers need at least one dimension, so ``latent_dim`` must be at least 2.
    """
    if top is None:
        top = latent_dim // 2
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top < latent_dim:
        raise VarfamError(
            f"{owner}: option top must be an integer from 1 to latent_dim - 1 = "
            f"{latent_dim - 1} (both layers need a dimension), got {top!r}"
        )
    return top


def hidden_widths(owner: str, hidden: object) -> tuple[int, ...]:
    """``hidden`` (an int or a sequence of ints) as a non-empty tuple of positive widths."""
    widths = (hidden,) if isinstance(hidden, int) and not isinstance(hidden, bool) else hidden
    if (
        not isinstance(widths, Sequence)
        or not widths
        or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths)
    ):
        raise VarfamError(
            f"{owner}: option hidden must be a positive integer or a list of them, got {hidden!r}"
        )
    return tuple(widths)


class ConditionalGaussian(nn.Module):
    """A gated MLP (z_top, optional context) → (loc, scale) of a diagonal Gaussian.

    The first layer is the gated layer of the VampPrior paper,
    ``a ⊙ sigmoid(g)`` with ``(a, g) = W z_top + U c + b``; the context term ``U c``
    (c: (B, F), made once by :meth:`context`) broadcasts over any leading sample
    dimensions of ``z_top`` (..., B, D_top). Further widths add gated layers. The
    scale is ``positive_scale`` of a log-variance head, as in the diagonal family.
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden: tuple[int, ...], context_dim: int = 0
    ) -> None:
        super().__init__()
        self.first = nn.Linear(in_dim, 2 * hidden[0])
        self.ctx = nn.Linear(context_dim, 2 * hidden[0], bias=False) if context_dim else None
        self.rest = nn.ModuleList(
            nn.Linear(a, 2 * b) for a, b in zip(hidden[:-1], hidden[1:])
        )
        self.head = nn.Linear(hidden[-1], 2 * out_dim)

    def context(self, c: Tensor) -> Tensor | None:
        """The context's share of the first layer, (B, 2·hidden[0]); ``None`` without one."""
        if self.ctx is None:
            return None
        with network_precision(c.device.type):
            return self.ctx(c)

    def forward(self, z_top: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        with network_precision(z_top.device.type):
            pre = self.first(z_top) if context is None else self.first(z_top) + context
            a = _gated(pre)
            for layer in self.rest:
                a = _gated(layer(a))
            out = self.head(a)
        loc, log_var = out.to(z_top.dtype).chunk(2, dim=-1)
        return loc, positive_scale(log_var)


def _gated(pre: Tensor) -> Tensor:
    """value ⊙ sigmoid(gate) for ``pre = (value, gate)`` along the last dimension."""
    value, gate = pre.chunk(2, dim=-1)
    return value * torch.sigmoid(gate)


class TwoLevelGaussian(Distribution):
    """z = (z_top, z_bottom): z_top ~ ``top``, z_bottom | z_top ~ N(conditional(z_top)).

    ``top`` is any distribution over R^{D_top} with event ``(D_top,)`` (a diagonal
    Gaussian in the posterior, any prior in the prior); ``conditional`` maps z_top
    (..., D_top) to (loc, scale), each (..., D_bottom), broadcasting against the
    batch shape. batch_shape is ``top``'s, event_shape ``(D_top + D_bottom,)``.

    ``log_prob(z) = log top(z_top) + Σ_d log N(z_bottom,d; loc_d, scale_d)`` in nats.
    ``rsample`` is reparameterized when ``top`` is; ``sample`` always works.
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 1)

    def __init__(self, top: Distribution, conditional: Conditional, bottom_dim: int) -> None:
        self.top = top
        self.conditional = conditional
        self.top_dim = top.event_shape[0]
        self.bottom_dim = bottom_dim
        super().__init__(
            top.batch_shape, torch.Size([self.top_dim + bottom_dim]), validate_args=False
        )

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.top.has_rsample

    def split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(z_top (..., D_top), z_bottom (..., D_bottom)) of z (..., D)."""
        return z.split([self.top_dim, self.bottom_dim], dim=-1)

    def bottom(self, z_top: Tensor) -> Independent:
        """p(z_bottom | z_top) as a diagonal Gaussian with event (D_bottom,)."""
        loc, scale = self.conditional(z_top)
        return Independent(Normal(loc, scale, validate_args=False), 1)

    def _draw(self, sample_shape: torch.Size, reparameterized: bool) -> Tensor:
        z_top = self.top.rsample(sample_shape) if reparameterized else self.top.sample(sample_shape)
        # Normal.rsample draws eps as torch.distributions does everywhere, so a compiled
        # step draws the same numbers as an eager one for the same seed
        z_bottom = self.bottom(z_top).rsample()
        return torch.cat([z_top, z_bottom], dim=-1)

    def rsample(self, sample_shape: torch.Size = _SCALAR) -> Tensor:
        if not self.top.has_rsample:
            raise NotImplementedError(
                f"the top layer ({type(self.top).__name__}) has no reparameterized sampler"
            )
        return self._draw(torch.Size(sample_shape), reparameterized=True)

    def sample(self, sample_shape: torch.Size = _SCALAR) -> Tensor:
        with torch.no_grad():
            return self._draw(torch.Size(sample_shape), reparameterized=False)

    def log_prob(self, value: Tensor) -> Tensor:
        z_top, z_bottom = self.split(value)
        return self.top.log_prob(z_top) + self.bottom(z_top).log_prob(z_bottom)


@FAMILIES.register(
    "hierarchical",
    "two stochastic layers q(z_top|x) q(z_bottom|x, z_top), both diagonal Gaussians "
    "(options top: dimensions of z_top, default D/2; hidden: width of the conditional "
    "network, default 300); use with the hierarchical prior",
    "Tomczak & Welling 2018, VAE with a VampPrior (HVAE); Burda, Grosse & Salakhutdinov "
    "2016 (two stochastic layers)",
)
class HierarchicalGaussian(Family):
    """q(z|x) = N(z_top; heads(h)) · N(z_bottom; ConditionalGaussian(z_top, context h)).

    ``z = (z_top, z_bottom)`` of shape (..., D) with ``z[..., :top]`` the top layer.
    Its natural prior is ``hierarchical`` with the same ``top``, so that
    ``p(z_bottom | z_top)`` mirrors ``q(z_bottom | x, z_top)``.

    >>> fam = HierarchicalGaussian(16, 6, top=2, hidden=8)
    >>> q = fam(torch.zeros(3, 16))
    >>> z = q.rsample((4,))
    >>> z.shape, q.log_prob(z).shape, q.top.event_shape
    (torch.Size([4, 3, 6]), torch.Size([4, 3]), torch.Size([2]))
    """

    default_prior = "hierarchical"

    def __init__(
        self,
        feature_dim: int,
        latent_dim: int,
        *,
        top: int | None = None,
        hidden: int | Sequence[int] = 300,
    ) -> None:
        super().__init__(feature_dim, latent_dim)
        self.top_dim = split_top("hierarchical family", latent_dim, top)
        self.bottom_dim = latent_dim - self.top_dim
        widths = hidden_widths("hierarchical family", hidden)
        self.default_prior_options = {"top": self.top_dim}
        self.loc = nn.Linear(feature_dim, self.top_dim)
        self.log_var = nn.Linear(feature_dim, self.top_dim)
        self.conditional = ConditionalGaussian(
            self.top_dim, self.bottom_dim, widths, context_dim=feature_dim
        )

    def forward(self, h: Tensor) -> TwoLevelGaussian:
        top = Independent(
            Normal(self.loc(h), positive_scale(self.log_var(h)), validate_args=False), 1
        )
        context = self.conditional.context(h)
        return TwoLevelGaussian(
            top, lambda z_top: self.conditional(z_top, context), self.bottom_dim
        )

    def location(self, h: Tensor) -> Tensor:
        """(μ_t, μ_b(h, μ_t)), shape (B, D): the mean of each layer given the layer above."""
        top = self.loc(h)
        bottom, _ = self.conditional(top, self.conditional.context(h))
        return torch.cat([top, bottom], dim=-1)
