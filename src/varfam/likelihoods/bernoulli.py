"""Bernoulli and continuous Bernoulli likelihoods, both on logits.

The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019, "The continuous
Bernoulli: fixing a pervasive error in variational autoencoders") is the
normalized version of the cross-entropy a Bernoulli VAE applies to grey values:

    p(x | η) = η / (e^η - 1) · e^{η x},   x ∈ [0, 1],   η = logit(λ),

so ``log p(x|η) = η x - g(η)`` with ``g(η) = log((e^η - 1) / η)`` and
``E[x] = g'(η) = 1 / (1 - e^{-η}) - 1 / η``. torch's ``ContinuousBernoulli``
works in λ: it clamps λ away from 0 and 1 (so densities of large |η| do not
integrate to one) and its mean loses about 4e-4 in float32 just outside its
Taylor window around λ = 1/2. :class:`StableContinuousBernoulli` keeps torch's
sampling but computes ``log_prob``, the normalizer, ``mean`` and ``entropy`` from
η: ``g(|η|) = |η| + log((1 - e^{-|η|}) / |η|)`` with ``expm1`` (and
``g(η) = g(|η|) + min(η, 0)``), and the Taylor series
``g(η) = η/2 + η²/24 - η⁴/2880 + η⁶/181440`` and
``g'(η) = 1/2 + η/12 - η³/720 + η⁵/30240 - η⁷/1209600`` for |η| < 0.1, where the
dropped terms are below 2e-15.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, ContinuousBernoulli, Distribution, Independent

from varfam.likelihoods.base import Likelihood, check_unit_interval
from varfam.registry import LIKELIHOODS

__all__ = [
    "bernoulli_log_prob",
    "IndependentBernoulli",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "StableContinuousBernoulli",
    "continuous_bernoulli_log_normalizer",
    "continuous_bernoulli_mean",
]

_TAYLOR = 0.1


def continuous_bernoulli_log_normalizer(eta: Tensor) -> Tensor:
    """``g(η) = log ∫_0^1 e^{η x} dx = log((e^η - 1) / η)``, elementwise, stable for all η."""
    small = eta.abs() < _TAYLOR
    a = torch.where(small, torch.ones_like(eta), eta.abs())
    large = a + torch.log(-torch.expm1(-a) / a) + eta.clamp_max(0)
    eta2 = eta * eta
    taylor = eta / 2 + eta2 * (1 / 24 + eta2 * (-1 / 2880 + eta2 / 181440))
    return torch.where(small, taylor, large)


def continuous_bernoulli_mean(eta: Tensor) -> Tensor:
    """``E[x] = g'(η) = 1 / (1 - e^{-η}) - 1 / η``, elementwise, stable for all η."""
    small = eta.abs() < _TAYLOR
    a = torch.where(small, torch.ones_like(eta), eta.abs())
    m = 1 / (-torch.expm1(-a)) - 1 / a  # the mean for +|η|; mean(-η) = 1 - mean(η)
    large = torch.where(eta < 0, 1 - m, m)
    eta2 = eta * eta
    taylor = 0.5 + eta * (1 / 12 + eta2 * (-1 / 720 + eta2 * (1 / 30240 - eta2 / 1209600)))
    return torch.where(small, taylor, large)


class StableContinuousBernoulli(ContinuousBernoulli):
    """torch's ``ContinuousBernoulli(logits=η)`` with densities and moments computed from η.

    See the module docstring. ``log_prob(x) = η x - g(η)`` (nats), exact for every
    finite η; sampling is torch's inverse CDF.

    >>> d = StableContinuousBernoulli(logits=torch.tensor([0.0, 40.0]))
    >>> [round(v, 4) for v in d.mean.tolist() + d.log_prob(torch.tensor([0.5, 1.0])).tolist()]
    [0.5, 0.975, 0.0, 3.6889]
    """

    def __init__(self, logits: Tensor, validate_args: bool | None = False) -> None:
        super().__init__(logits=logits, validate_args=validate_args)

    def _cont_bern_log_norm(self) -> Tensor:
        """log C(λ) with p(x) = C(λ) λ^x (1 - λ)^(1-x): ``softplus(η) - g(η)``."""
        return F.softplus(self.logits) - continuous_bernoulli_log_normalizer(self.logits)

    def log_prob(self, value: Tensor) -> Tensor:
        eta, value = torch.broadcast_tensors(self.logits, value)
        return eta * value - continuous_bernoulli_log_normalizer(eta)

    @property
    def mean(self) -> Tensor:
        return continuous_bernoulli_mean(self.logits)

    def entropy(self) -> Tensor:
        return continuous_bernoulli_log_normalizer(self.logits) - self.logits * self.mean


def bernoulli_log_prob(logits: Tensor, x: Tensor, event_dims: int) -> Tensor:
    """``log Bernoulli(x; σ(l)) = x·l − softplus(l)`` (nats), summed over the last ``event_dims``.

    ``x`` in [0, 1] broadcasts against ``logits`` (e.g. (B, ...) against (k, B, ...);
    it is expanded, never copied); the result has the broadcast shape without its
    last ``event_dims`` dims. torch's ``binary_cross_entropy_with_logits`` (one ATen
    kernel, exact to rounding through ``log_sigmoid``), summed before it is negated,
    so the negation and its backward touch (B,) values rather than every pixel.

    >>> l, x = torch.tensor([[-30.0, 0.0, 2.0]]), torch.tensor([[1.0, 0.5, 0.0]])
    >>> bernoulli_log_prob(l, x, 1), -F.binary_cross_entropy_with_logits(l, x).mul(3)
    (tensor([-32.8201]), tensor(-32.8201))
    """
    if x.shape != logits.shape:
        logits, x = torch.broadcast_tensors(logits, x)
    bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return -bce.sum(tuple(range(-event_dims, 0))) if event_dims else -bce


class IndependentBernoulli(Independent):
    """``Independent(Bernoulli(logits=l), n)``: p(x|z) of the Bernoulli likelihood, built for the
    hot loop (no broadcasting or checks: ``logits`` come from the decoder, (B, *event)),
    with ``log_prob`` from :func:`bernoulli_log_prob` and ``log_prob_tiled`` for k latents
    per image (``x`` is broadcast, never copied k times)."""

    def __init__(self, logits: Tensor, event_dims: int) -> None:
        base = Bernoulli.__new__(Bernoulli)
        base.logits = base._param = logits
        Distribution.__init__(base, logits.shape, validate_args=False)
        self.base_dist = base
        self.reinterpreted_batch_ndims = event_dims
        split = logits.dim() - event_dims
        Distribution.__init__(self, logits.shape[:split], logits.shape[split:],
                              validate_args=False)

    def expand(self, batch_shape: torch.Size, _instance: IndependentBernoulli | None = None):
        new = self._get_checked_instance(IndependentBernoulli, _instance)
        logits = self.base_dist.logits.expand(torch.Size(batch_shape) + self.event_shape)
        IndependentBernoulli.__init__(new, logits, self.reinterpreted_batch_ndims)
        return new

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(x|z) in nats, shape ``batch_shape`` (or the broadcast batch of ``value``)."""
        return bernoulli_log_prob(self.base_dist.logits, value, self.reinterpreted_batch_ndims)

    def log_prob_tiled(self, x: Tensor, lead: tuple[int, ...], observed: None = None) -> Tensor:
        """log p(x|z), shape ``lead``, of the rows tiling ``x`` (B, *event), B = lead[-1]."""
        logits = self.base_dist.logits.view(*lead, *self.event_shape)
        return bernoulli_log_prob(logits, x, self.reinterpreted_batch_ndims)


@LIKELIHOODS.register(
    "bernoulli",
    "Bernoulli on logits (binary or grey values in [0, 1], as in the textbook example)",
    "Kingma & Welling 2014, Auto-Encoding Variational Bayes",
)
class BernoulliLikelihood(Likelihood):
    """p(x|z) = prod Bernoulli(x_i; sigmoid(logit_i)), computed from logits (P = 1).

    Grey values in [0, 1] are accepted (the cross-entropy of the classic example);
    then ``log_prob`` is not a normalized density. ``.mean`` is ``sigmoid(logits)``.
    """

    discrete = True

    def forward(self, params: Tensor) -> Distribution:
        # squeeze, not params[:, 0]: its backward is a view, where select's fills a zero
        # tensor of the decoder's output and copies the gradient into it
        return IndependentBernoulli(params.squeeze(1), len(self.data_shape))

    def check_data(self, x: Tensor) -> None:
        check_unit_interval(x, "bernoulli")


@LIKELIHOODS.register(
    "continuous-bernoulli",
    "continuous Bernoulli on logits: the normalized density for grey values in [0, 1]",
    "Loaiza-Ganem & Cunningham 2019, The continuous Bernoulli: fixing a pervasive error "
    "in variational autoencoders",
)
class ContinuousBernoulliLikelihood(Likelihood):
    """p(x|z) = prod CB(x_i; logit_i), a proper density on [0, 1]^n (P = 1).

    ``.mean`` is the distribution's mean (not ``sigmoid(logit)``, which is the
    mode-like λ and is biased towards 0 and 1 less than the mean is).

    >>> lik = ContinuousBernoulliLikelihood((1, 2, 2))
    >>> lik(torch.zeros(3, 1, 1, 2, 2)).log_prob(torch.rand(3, 1, 2, 2)).shape
    torch.Size([3])
    """

    def forward(self, params: Tensor) -> Distribution:
        return self._event(StableContinuousBernoulli(logits=params.squeeze(1)))

    def check_data(self, x: Tensor) -> None:
        check_unit_interval(x, "continuous-bernoulli")
