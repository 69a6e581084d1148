"""Gaussian and Laplace likelihoods for real-valued data, with fixed or learned scale.

The decoder's first output channel is the location (identity link, so any real
value is allowed and ``.mean`` is in the data's range). The scale is one of:

- ``"fixed"``: the given value everywhere (P = 1); a Gaussian with fixed σ is
  squared error scaled by 1/(2σ²), plus a constant;
- ``"global"`` (default): one learned scalar for all values (P = 1), a module
  parameter starting at the given value — the maximum-likelihood noise level;
- ``"pixel"``: a second decoder channel gives a scale per value (P = 2),
  ``scale = floor + (value - floor) · exp(raw)``, so an untrained decoder
  (raw ≈ 0) starts near the given value.

Learned scales are ``floor + (value - floor) · exp(raw)``: smooth, never below the
floor (default 1e-3) and never with a cut-off gradient. Without a floor a
per-value scale can shrink without bound on constant pixels (an image border),
and the likelihood diverges. Densities are in nats against Lebesgue measure, so
they are not comparable with the bits/dim of discrete likelihoods.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Laplace, Normal

from varfam.errors import VarfamError
from varfam.likelihoods.base import Likelihood, check_finite
from varfam.registry import LIKELIHOODS

__all__ = ["GaussianLikelihood", "LaplaceLikelihood", "SCALE_MODES"]

SCALE_MODES = ("fixed", "global", "pixel")


class _LocationScale(Likelihood):
    """Shared scale handling; subclasses set ``name`` and ``base`` (loc, scale) → Distribution."""

    name = ""

    def __init__(
        self, data_shape: tuple[int, ...], mode: str, value: float, floor: float,
        option: str, value_option: str,
    ) -> None:
        super().__init__(data_shape)
        if mode not in SCALE_MODES:
            raise VarfamError(
                f"{self.name} likelihood: option {option} must be one of "
                f"{', '.join(SCALE_MODES)}, got {mode!r}"
            )
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise VarfamError(
                f"{self.name} likelihood: option {value_option} must be a positive number, "
                f"got {value!r}"
            )
        if mode != "fixed" and not 0 <= floor < value:
            raise VarfamError(
                f"{self.name} likelihood: the scale floor must be in [0, {value_option}), "
                f"got {floor!r}"
            )
        self.mode, self.value, self.floor = mode, float(value), float(floor)
        self.params_per_value = 2 if mode == "pixel" else 1
        if mode == "global":
            self.raw_scale = nn.Parameter(torch.zeros(()))

    def scale(self, params: Tensor) -> Tensor:
        """The scale for decoder output ``params`` (B, P, *data_shape): broadcastable to loc."""
        if self.mode == "fixed":
            return params.new_tensor(self.value)
        raw = self.raw_scale if self.mode == "global" else params[:, 1]
        return self.floor + (self.value - self.floor) * torch.exp(raw.to(params.dtype))

    def base(self, loc: Tensor, scale: Tensor) -> Distribution:  # pragma: no cover
        raise NotImplementedError

    def forward(self, params: Tensor) -> Distribution:
        loc = params[:, 0]
        scale = self.scale(params).expand_as(loc)
        return self._event(self.base(loc, scale))

    def check_data(self, x: Tensor) -> None:
        check_finite(x, self.name)


@LIKELIHOODS.register(
    "gaussian",
    "Gaussian N(loc, sigma^2): options variance fixed|global|pixel (default global) and "
    "sigma (default 0.1)",
)
class GaussianLikelihood(_LocationScale):
    """p(x|z) = prod N(x_i; loc_i, σ_i²), loc from the decoder (identity link).

    Options: ``variance`` — ``"fixed"`` (σ = ``sigma``), ``"global"`` (one learned σ,
    starting at ``sigma``; the default) or ``"pixel"`` (σ per value from a second
    decoder channel); ``sigma`` (default 0.1, about the noise level of images in
    [0, 1]); ``min_sigma`` (default 1e-3), the floor of a learned σ.

    >>> lik = GaussianLikelihood((1, 2, 2), variance="pixel")
    >>> px = lik(torch.zeros(3, 2, 1, 2, 2))
    >>> lik.params_per_value, px.log_prob(torch.zeros(3, 1, 2, 2)).shape
    (2, torch.Size([3]))
    """

    name = "gaussian"

    def __init__(
        self,
        data_shape: tuple[int, ...],
        *,
        variance: str = "global",
        sigma: float = 0.1,
        min_sigma: float = 1e-3,
    ) -> None:
        super().__init__(data_shape, variance, sigma, min_sigma, "variance", "sigma")

    def base(self, loc: Tensor, scale: Tensor) -> Distribution:
        return Normal(loc, scale, validate_args=False)


@LIKELIHOODS.register(
    "laplace",
    "Laplace(loc, b): options scale fixed|global|pixel (default global) and b (default 0.1)",
)
class LaplaceLikelihood(_LocationScale):
    """p(x|z) = prod Laplace(x_i; loc_i, b_i) = prod exp(-|x_i - loc_i| / b_i) / (2 b_i).

    An absolute-error reconstruction loss with a proper normalizer. Options:
    ``scale`` — ``"fixed"``, ``"global"`` (default) or ``"pixel"``, as for the
    Gaussian's ``variance``; ``b`` (default 0.1), the fixed or starting scale;
    ``min_b`` (default 1e-3), the floor of a learned scale.
    """

    name = "laplace"

    def __init__(
        self,
        data_shape: tuple[int, ...],
        *,
        scale: str = "global",
        b: float = 0.1,
        min_b: float = 1e-3,
    ) -> None:
        super().__init__(data_shape, scale, b, min_b, "scale", "b")

    def base(self, loc: Tensor, scale: Tensor) -> Distribution:
        return Laplace(loc, scale, validate_args=False)
