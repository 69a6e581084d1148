"""The two-layer prior p(z_top) · p(z_bottom | z_top) of a hierarchical VAE.

Tomczak & Welling 2018, "VAE with a VampPrior" (HVAE): ``z = (z_top, z_bottom)``,

    p(z) = p_top(z_top) · N(z_bottom; μ(z_top), diag σ(z_top)²),

with ``p_top`` any registered prior over the ``top`` first dimensions (option
``top_prior``, default ``standard``; the paper's is ``vamp``) and μ, σ a gated MLP
(:class:`~varfam.families.hierarchical.ConditionalGaussian`, option ``hidden``).
Its partner is the ``hierarchical`` family, whose own natural prior it is.

A VampPrior on top needs ``q(z_top | u_k)`` for each pseudo-input: the prior passes it
an encoder that returns the top layer of ``q(z|u)``: ``q.top`` for the hierarchical
family, or the first ``top`` coordinates of a diagonal Gaussian.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from varfam.errors import VarfamError
from varfam.families.hierarchical import (
    ConditionalGaussian,
    TwoLevelGaussian,
    hidden_widths,
    split_top,
)
from varfam.priors.base import Encode, Prior
from varfam.priors.vamp import diagonal_normal_params
from varfam.registry import PRIORS

__all__ = ["HierarchicalPrior", "top_marginal"]


def top_marginal(q: Distribution, top: int) -> Distribution:
    """The marginal of q(z|x) over z[..., :top], event (top,).

    Known for the hierarchical family (its top layer, whose size must be ``top``) and
    for diagonal Gaussians (the first ``top`` coordinates); other families raise a
    :class:`VarfamError`.
    """
    if isinstance(q, TwoLevelGaussian):
        if q.top_dim != top:
            raise VarfamError(
                f"hierarchical prior: its top layer has {top} dimensions but the family's "
                f"has {q.top_dim}; give both the same option top"
            )
        return q.top
    diagonal = diagonal_normal_params(q)
    if diagonal is not None:
        loc, scale = diagonal
        return Independent(Normal(loc[..., :top], scale[..., :top]), 1)
    raise VarfamError(
        f"hierarchical prior: the marginal of the top layer is not known for "
        f"{type(q).__name__}; use the hierarchical or diagonal family with this top prior"
    )


@PRIORS.register(
    "hierarchical",
    "two layers p(z_top) p(z_bottom|z_top): any prior on the top (option top_prior, default "
    "standard, with top_prior_options), a gated-MLP Gaussian below (options top: dimensions "
    "of z_top, default D/2; hidden, default 300)",
    "Tomczak & Welling 2018, VAE with a VampPrior (HVAE)",
)
class HierarchicalPrior(Prior):
    """p(z) = p_top(z[:top]) · N(z[top:]; ConditionalGaussian(z[:top])).

    Shapes: ``log_prob`` of (..., D) → (...), nats; ``sample(s)`` → s + (D,).

    >>> import torch
    >>> p = HierarchicalPrior(5, (1, 4, 4), top=2, hidden=8)()
    >>> p.log_prob(torch.zeros(3, 4, 5)).shape, p.sample((6,)).shape
    (torch.Size([3, 4]), torch.Size([6, 5]))
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: tuple[int, ...],
        *,
        top: int | None = None,
        hidden: int | Sequence[int] = 300,
        top_prior: str = "standard",
        top_prior_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(latent_dim, data_shape)
        self.top_dim = split_top("hierarchical prior", latent_dim, top)
        widths = hidden_widths("hierarchical prior", hidden)
        if top_prior == "hierarchical":
            raise VarfamError("hierarchical prior: option top_prior cannot be hierarchical")
        if top_prior_options is not None and not isinstance(top_prior_options, dict):
            raise VarfamError(
                "hierarchical prior: option top_prior_options must be a table of options, "
                f"got {top_prior_options!r}"
            )
        self.top_prior = PRIORS.build(
            top_prior, self.top_dim, self.data_shape, options=top_prior_options or {}
        )
        self.conditional = ConditionalGaussian(
            self.top_dim, latent_dim - self.top_dim, widths
        )

    def forward(self, encode: Encode | None = None) -> Distribution:
        top_encode = None
        if encode is not None:
            def top_encode(u: Tensor) -> Distribution:
                return top_marginal(encode(u), self.top_dim)
        top = self.top_prior(top_encode)
        return TwoLevelGaussian(top, self.conditional, self.latent_dim - self.top_dim)
