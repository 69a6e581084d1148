"""The likelihood contract and the data checks shared by the built-in likelihoods."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.distributions import Distribution, Independent

from varfam.errors import VarfamError
from varfam.parts import TrainingHooks

__all__ = ["Likelihood", "check_unit_interval", "check_finite"]


class Likelihood(TrainingHooks, nn.Module):
    """p(x|z) for data of shape ``data_shape``; subclasses set ``params_per_value``.

    ``forward(params)`` maps decoder output (B, P, *data_shape) to a Distribution
    with batch (B,) and event ``data_shape``. ``params_per_value`` may be set per
    instance where it depends on an option (mixture components, learned variance).
    """

    params_per_value: int = 1
    #: True when log_prob is a probability mass (bits/dim makes sense).
    discrete: bool = False

    def __init__(self, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)

    def forward(self, params: Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def observe(self, x: Tensor) -> Any:
        """What ``log_prob`` computes from ``x`` (B, *data_shape) alone, to be reused across
        many batches of latents (see :meth:`varfam.VAE.observe`); ``None`` when nothing is."""
        return None

    def check_data(self, x: Tensor) -> None:
        """Raise :class:`VarfamError` if ``x`` lies outside this likelihood's support."""

    def _event(self, base: Distribution) -> Distribution:
        """Sum ``base`` (batch (B, *data_shape)) over the data dimensions: batch (B,)."""
        return Independent(base, len(self.data_shape))


def check_unit_interval(x: Tensor, name: str) -> None:
    """Refuse values outside [0, 1] with a message that says what to do."""
    check_finite(x, name)
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise VarfamError(
            f"the {name} likelihood needs data in [0, 1] but values span [{lo:g}, {hi:g}]; "
            "rescale the data to [0, 1] or use --likelihood gaussian"
        )


def check_finite(x: Tensor, name: str) -> None:
    """Refuse NaN or infinite values."""
    bad = int((~x.isfinite()).sum())
    if bad:
        raise VarfamError(
            f"the data hold {bad} NaN or infinite values, which the {name} likelihood cannot "
            "model; remove or replace them, or, if NaN marks missing values, let the model skip "
            "them: a table with its default mixed likelihood (leave --likelihood out), images "
            "and arrays with --mask nan"
        )
