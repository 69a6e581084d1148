"""A learned Gaussian per class: the prior p(z|y) of a model conditioned on labels.

``p(z|y) = N(loc_y, diag(exp(log_scale_y)^2))`` with ``loc`` and ``log_scale`` of
shape (C, D), trained with the VAE (as the class-conditional prior of a conditional
VAE: Sohn, Lee & Yan 2015, "Learning Structured Output Representation using Deep
Conditional Generative Models"). Every class starts at N(0, I). Given labels it is a
diagonal Gaussian of batch shape (B,), so Gaussian families keep their closed-form
KL; without labels it is the marginal ``p(z) = 1/C Σ_y p(z|y)`` (p(y) uniform), a
mixture, as sampling from the whole model needs.

The model fills in the option ``n_classes`` from its own number of classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from varfam.errors import VarfamError
from varfam.priors.base import Encode, Prior
from varfam.registry import PRIORS

__all__ = ["ConditionalGaussianPrior"]


@PRIORS.register(
    "conditional",
    "a learned diagonal Gaussian p(z|y) per class (models conditioned on labels, "
    "--condition label); without a label, their uniform mixture",
    "Sohn, Lee & Yan 2015, Learning Structured Output Representation using Deep "
    "Conditional Generative Models",
)
class ConditionalGaussianPrior(Prior):
    """p(z|y) = N(loc[y], diag(exp(log_scale[y])^2)); ``loc``, ``log_scale``: (C, D).

    >>> p = ConditionalGaussianPrior(2, (1, 8, 8), n_classes=3)
    >>> p.given_label(None, torch.tensor([0, 2, 2, 1])).batch_shape, p().batch_shape
    (torch.Size([4]), torch.Size([]))
    """

    def __init__(
        self, latent_dim: int, data_shape: tuple[int, ...], *, n_classes: int | None = None
    ) -> None:
        super().__init__(latent_dim, data_shape)
        if n_classes is None:
            raise VarfamError(
                "the conditional prior needs a model conditioned on labels: add --condition "
                "label (or pick another --prior)"
            )
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise VarfamError(
                f"conditional prior: option n_classes must be an integer >= 2, got {n_classes!r}"
            )
        self.n_classes = n_classes
        self.loc = nn.Parameter(torch.zeros(n_classes, latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(n_classes, latent_dim))

    def given_label(self, encode: Encode | None, y: Tensor) -> Distribution:
        return Independent(Normal(self.loc[y], self.log_scale[y].exp()), 1)

    def forward(self, encode: Encode | None = None) -> Distribution:
        return MixtureSameFamily(
            Categorical(logits=torch.zeros_like(self.loc[:, 0])),
            Independent(Normal(self.loc, self.log_scale.exp()), 1),
        )
