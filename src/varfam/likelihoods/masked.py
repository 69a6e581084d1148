"""The ``masked`` likelihood: any per-value likelihood, scored on the observed values only.

Images (or vectors) with missing values hold NaN there (see :mod:`varfam.data.masks`).
``masked`` wraps another likelihood (option ``base``, with its ``options``) whose
distribution is an ``Independent`` over the values (``bernoulli``,
``continuous-bernoulli``, ``gaussian``, ``laplace``, ``discretized-logistic``,
``categorical``): each missing value is filled with 0, scored, and its score replaced
by 0 with ``torch.where``, so NaN never reaches a value or a gradient. This is
MIWAE's observed-data likelihood for images (Mattei & Frellsen 2019). ``varfam
train --mask FILE.npy`` (or ``--mask nan``) sets it up, with the architecture's
``masked`` option so that the encoder sees the zero-filled image and the mask.

>>> lik = MaskedLikelihood((1, 2, 2), base="bernoulli")
>>> px = lik(torch.zeros(3, 1, 1, 2, 2))
>>> x = torch.tensor([[1.0, 0.0, float("nan"), 1.0]]).view(1, 1, 2, 2).expand(3, -1, -1, -1)
>>> [round(v, 4) for v in px.log_prob(x).tolist()]  # 3 observed pixels, each log 1/2
[-2.0794, -2.0794, -2.0794]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, constraints

from varfam.errors import VarfamError
from varfam.likelihoods.base import Likelihood
from varfam.registry import LIKELIHOODS

__all__ = ["MaskedLikelihood", "ObservedOnly"]


class ObservedOnly(Distribution):
    """``px`` (an ``Independent`` over the values) whose ``log_prob`` skips NaN values.

    ``log_prob(x)``: x (..., B, *event) with NaN where missing → (..., B) nats, the sum
    over the observed values; ``mean``, ``sample`` are ``px``'s.
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, px: Independent) -> None:
        self.px = px
        super().__init__(px.batch_shape, px.event_shape, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        observed = ~torch.isnan(value)
        filled = torch.where(observed, value, torch.zeros_like(value))
        lp = self.px.base_dist.log_prob(filled)
        lp = torch.where(observed, lp, torch.zeros_like(lp))
        return lp.sum(tuple(range(-len(self.event_shape), 0)))

    @property
    def mean(self) -> Tensor:
        return self.px.mean

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        return self.px.sample(torch.Size(sample_shape))


@LIKELIHOODS.register(
    "masked",
    "another likelihood (option base, with its options) scored on the observed values only; "
    "NaN values are missing (set by varfam train --mask)",
    "Mattei & Frellsen 2019, MIWAE",
)
class MaskedLikelihood(Likelihood):
    """p(x_obs | z) of the likelihood ``base`` (built with ``options``); see the module doc."""

    def __init__(self, data_shape: tuple[int, ...], *, base: str = "bernoulli",
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(data_shape)
        if base in ("masked", "mixed"):
            raise VarfamError(f"masked likelihood: base '{base}' already handles missing values; "
                              "use it directly")
        self.inner = LIKELIHOODS.build(base, data_shape, options=options or {})
        self.base = base
        self.params_per_value = self.inner.params_per_value
        self.discrete = self.inner.discrete

    def forward(self, params: Tensor) -> Distribution:
        px = self.inner(params)
        if not isinstance(px, Independent):
            raise VarfamError(
                f"the {self.base} likelihood does not score values one by one, so it cannot "
                "skip missing ones; use bernoulli, gaussian, laplace or continuous-bernoulli"
            )
        return ObservedOnly(px)

    def check_data(self, x: Tensor) -> None:
        """The base likelihood's check, on the observed values."""
        self.inner.check_data(x[~torch.isnan(x)])

    def set_epoch(self, epoch: float) -> None:
        self.inner.set_epoch(epoch)

    def set_progress(self, progress: float) -> bool:
        return self.inner.set_progress(progress)
