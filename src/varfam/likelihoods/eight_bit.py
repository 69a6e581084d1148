"""Likelihoods for 8-bit data: discretized logistic mixture and a 256-way categorical.

Both give probability masses over the 256 levels ``k/255`` of a value in [0, 1]
(``discrete = True``, so bits per dimension are meaningful), each value
independently given z: there is no autoregressive coupling between the channels
of a pixel (PixelCNN++ couples them because its decoder is autoregressive; a VAE
decoder models the channels jointly through z).

**Discretized logistic mixture** (Salimans, Karpathy, Chen & Kingma 2017,
"PixelCNN++: Improving the PixelCNN with Discretized Logistic Mixture Likelihood
and Other Modifications"). With the data mapped to y = 2x - 1 ∈ [-1, 1] and
bin k centred at ``y_k = -1 + 2k/255`` with half-width 1/255, each of the K
components gives

    P(k) = σ((y_k + 1/255 - μ)/s) - σ((y_k - 1/255 - μ)/s),

with the edge bins open: the lower edge of bin 0 is -∞ and the upper edge of
bin 255 is +∞, so the 256 masses sum to exactly one. The difference is evaluated
as ``log σ(a) - log σ(b) = -softplus(-a) - softplus(b) + log(-expm1(b - a))``,
accurate for every a > b (no fallback to the density at the bin centre is
needed). Decoder channels (P = 3K): K mixture logits, K means μ (in the [-1, 1]
scale), K log-scales (clamped at -7, as in PixelCNN++).

**Categorical**: 256 logits per value (P = 256); the most flexible and the most
expensive decoder output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical, Distribution, constraints

from varfam.errors import VarfamError
from varfam.likelihoods.base import Likelihood, check_unit_interval
from varfam.priors.base import positive_int
from varfam.registry import LIKELIHOODS

__all__ = [
    "DiscretizedLogisticMixture",
    "EightBitCategorical",
    "DiscretizedLogisticLikelihood",
    "CategoricalLikelihood",
    "check_eight_bit",
    "LEVELS",
]

#: The number of levels of 8-bit data.
LEVELS = 256
_HALF_BIN = 1.0 / (LEVELS - 1)  # half the bin width in the [-1, 1] scale
_MIN_LOG_SCALE = -7.0
_NO_SAMPLE_DIMS = torch.Size()


def to_level(x: Tensor) -> Tensor:
    """The 8-bit level ``round(255 x)`` of values in [0, 1], as a long tensor in [0, 255]."""
    return torch.round(x * (LEVELS - 1)).clamp(0, LEVELS - 1).long()


def check_eight_bit(x: Tensor, name: str) -> None:
    """Refuse values that are not (within float rounding) of the form k/255, k = 0..255."""
    check_unit_interval(x, name)
    off = float((x * (LEVELS - 1) - torch.round(x * (LEVELS - 1))).abs().max())
    if off > 1e-3:
        raise VarfamError(
            f"the {name} likelihood needs 8-bit data (values k/255) but some values are "
            f"{off / (LEVELS - 1):.2g} away from the nearest level; quantize the data "
            "(round(255 x) / 255) or use --likelihood discretized-logistic or gaussian"
        )


class DiscretizedLogisticMixture(Distribution):
    """A mixture of K discretized logistics over the 256 levels k/255 of each value.

    ``logits``, ``loc`` and ``log_scale`` have shape ``batch + (K,)`` (``loc`` in the
    [-1, 1] scale); batch_shape is ``batch``, event_shape ``()``. ``log_prob(x)``
    rounds ``x`` ∈ [0, 1] to the nearest level and returns the log mass (nats).

    >>> d = DiscretizedLogisticMixture(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3))
    >>> levels = torch.arange(256) / 255
    >>> round(float(d.log_prob(levels[:, None].expand(256, 2)).exp().sum(0)[0]), 6)
    1.0
    """

    arg_constraints = {
        "logits": constraints.real_vector,
        "loc": constraints.real_vector,
        "log_scale": constraints.real_vector,
    }
    support = constraints.unit_interval

    def __init__(self, logits: Tensor, loc: Tensor, log_scale: Tensor) -> None:
        self.logits, self.loc = logits, loc
        self.log_scale = log_scale.clamp_min(_MIN_LOG_SCALE)
        super().__init__(batch_shape=loc.shape[:-1], validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        k = to_level(value).unsqueeze(-1)  # batch + (1,)
        centred = (2.0 * k.to(self.loc.dtype) / (LEVELS - 1) - 1.0) - self.loc
        inv_s = torch.exp(-self.log_scale)
        upper = torch.where(k == LEVELS - 1, torch.inf, (centred + _HALF_BIN) * inv_s)
        lower = torch.where(k == 0, -torch.inf, (centred - _HALF_BIN) * inv_s)
        log_mass = -F.softplus(-upper) - F.softplus(lower) + torch.log(-torch.expm1(lower - upper))
        return torch.logsumexp(torch.log_softmax(self.logits, -1) + log_mass, dim=-1)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = _NO_SAMPLE_DIMS) -> Tensor:
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.batch_shape
            c = Categorical(logits=self.logits).sample(sample_shape).unsqueeze(-1)
            loc = self.loc.expand(shape + self.loc.shape[-1:]).gather(-1, c).squeeze(-1)
            log_s = self.log_scale.expand(shape + self.loc.shape[-1:]).gather(-1, c).squeeze(-1)
            u = torch.rand(shape, dtype=loc.dtype, device=loc.device).clamp(1e-6, 1 - 1e-6)
            y = loc + log_s.exp() * (torch.log(u) - torch.log1p(-u))
            return to_level((y + 1) / 2).to(loc.dtype) / (LEVELS - 1)

    @property
    def mean(self) -> Tensor:
        """Σ_k P(k) k/255 = (1/255) Σ_{j=1}^{255} P(level ≥ j), summed in chunks of levels."""
        weights = torch.softmax(self.logits, -1)
        inv_s = torch.exp(-self.log_scale)
        total = torch.zeros_like(self.loc)
        edges = -1.0 + (2.0 * torch.arange(1, LEVELS, dtype=self.loc.dtype, device=self.loc.device)
                        - 1.0) / (LEVELS - 1)  # upper edge of level j - 1, j = 1..255
        for chunk in edges.split(32):
            e = chunk.view(-1, *([1] * self.loc.dim()))
            total = total + torch.sigmoid((self.loc - e) * inv_s).sum(0)
        return (weights * total).sum(-1) / (LEVELS - 1)


class EightBitCategorical(Distribution):
    """A 256-way categorical over the levels k/255: ``logits`` batch + (256,), event ().

    ``log_prob(x)`` rounds ``x`` ∈ [0, 1] to its level; ``sample`` returns values k/255.
    """

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.unit_interval

    def __init__(self, logits: Tensor) -> None:
        self.categorical = Categorical(logits=logits, validate_args=False)
        super().__init__(batch_shape=logits.shape[:-1], validate_args=False)

    @property
    def logits(self) -> Tensor:
        return self.categorical.logits

    def log_prob(self, value: Tensor) -> Tensor:
        return self.categorical.log_prob(to_level(value))

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = _NO_SAMPLE_DIMS) -> Tensor:
        return self.categorical.sample(sample_shape).to(self.logits.dtype) / (LEVELS - 1)

    @property
    def mean(self) -> Tensor:
        levels = torch.arange(LEVELS, dtype=self.logits.dtype, device=self.logits.device)
        return (self.categorical.probs * levels).sum(-1) / (LEVELS - 1)


@LIKELIHOODS.register(
    "discretized-logistic",
    "mixture of discretized logistics over 256 levels for 8-bit data in [0, 1] "
    "(option components, default 5)",
    "Salimans, Karpathy, Chen & Kingma 2017, PixelCNN++",
)
class DiscretizedLogisticLikelihood(Likelihood):
    """p(x|z) = prod over values of a K-component discretized logistic mixture (P = 3K).

    Data in [0, 1] are rounded to the nearest of the 256 levels k/255 (so data
    with fewer levels, such as the 17-level ``digits``, are accepted and
    modelled as 8-bit). ``.mean`` is the exact mean over the levels.
    """

    discrete = True

    def __init__(self, data_shape: tuple[int, ...], *, components: int = 5) -> None:
        super().__init__(data_shape)
        self.components = positive_int("discretized-logistic likelihood", "components",
                                       components)
        self.params_per_value = 3 * components

    def forward(self, params: Tensor) -> Distribution:
        logits, loc, log_scale = params.movedim(1, -1).chunk(3, dim=-1)
        return self._event(DiscretizedLogisticMixture(logits, loc, log_scale))

    def check_data(self, x: Tensor) -> None:
        check_unit_interval(x, "discretized-logistic")


@LIKELIHOODS.register(
    "categorical",
    "256-way categorical per value for 8-bit data (values k/255)",
    "van den Oord, Kalchbrenner & Kavukcuoglu 2016, Pixel Recurrent Neural Networks",
)
class CategoricalLikelihood(Likelihood):
    """p(x|z) = prod Categorical(255 x_i; softmax(logits_i)), 256 logits per value (P = 256).

    Data must be 8-bit levels k/255; ``check_data`` refuses anything else.
    """

    discrete = True
    params_per_value = LEVELS

    def forward(self, params: Tensor) -> Distribution:
        return self._event(EightBitCategorical(params.movedim(1, -1)))

    def check_data(self, x: Tensor) -> None:
        check_eight_bit(x, "categorical")
