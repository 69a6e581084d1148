"""Likelihoods p(x|z): turn the decoder's output into a Distribution over x.

The decoder emits ``params`` of shape ``(B, P, *data_shape)`` where
``P = likelihood.params_per_value``; ``forward(params)`` returns a distribution
with ``batch_shape == (B,)`` and ``event_shape == data_shape`` whose
``log_prob(x)`` is in nats per example. Losses are computed from logits, never
from ``sigmoid`` followed by BCE.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent

from .errors import VarfamError
from .registry import LIKELIHOODS

__all__ = ["Likelihood", "BernoulliLikelihood"]


class Likelihood(nn.Module):
    """p(x|z) for data of shape ``data_shape``; subclasses set ``params_per_value``."""

    params_per_value: int = 1
    #: True when log_prob is a probability mass (bits/dim makes sense).
    discrete: bool = False

    def __init__(self, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)

    def forward(self, params: Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_data(self, x: Tensor) -> None:
        """Raise :class:`VarfamError` if ``x`` lies outside this likelihood's support."""

    def _event(self, base: Distribution) -> Distribution:
        return Independent(base, len(self.data_shape))


def check_unit_interval(x: Tensor, name: str) -> None:
    """Refuse values outside [0, 1] with a message that says what to do."""
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise VarfamError(
            f"the {name} likelihood needs data in [0, 1] but values span [{lo:g}, {hi:g}]; "
            "rescale the data to [0, 1] or use --likelihood gaussian"
        )


@LIKELIHOODS.register(
    "bernoulli",
    "Bernoulli on logits (binary or grey values in [0, 1], as in the textbook example)",
)
class BernoulliLikelihood(Likelihood):
    """p(x|z) = prod Bernoulli(x_i; sigmoid(logit_i)), computed from logits.

    Grey values in [0, 1] are accepted (the cross-entropy of the classic example);
    then ``log_prob`` is not a normalized density.
    """

    discrete = True

    def forward(self, params: Tensor) -> Distribution:
        return self._event(Bernoulli(logits=params[:, 0], validate_args=False))

    def check_data(self, x: Tensor) -> None:
        check_unit_interval(x, "bernoulli")

