"""Priors p(z): modules whose ``forward`` returns a Distribution over z.

Every prior is built as ``Prior(latent_dim, data_shape, **options)`` and its
``forward(encode)`` returns a distribution with ``batch_shape == ()`` and
``event_shape == (D,)``. ``encode`` is the model's ``x → q(z|x)`` map; only
priors defined through the encoder (the VampPrior) use it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from .registry import PRIORS

__all__ = ["Prior", "StandardNormal", "Encode"]

Encode = Callable[[Tensor], Distribution]


class Prior(nn.Module):
    """p(z) over R^D (or the part of it a family lives on)."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.data_shape = tuple(data_shape)

    def forward(self, encode: Encode | None = None) -> Distribution:  # pragma: no cover
        raise NotImplementedError


@PRIORS.register("standard", "standard normal N(0, I)")
class StandardNormal(Prior):
    """p(z) = N(0, I_D)."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...]) -> None:
        super().__init__(latent_dim, data_shape)
        self.register_buffer("_zero", torch.zeros(latent_dim), persistent=False)

    def forward(self, encode: Encode | None = None) -> Distribution:
        return Independent(Normal(self._zero, torch.ones_like(self._zero)), 1)
