"""The diagonal Gaussian as the training loop uses it: torch's distribution, built for speed.

:class:`DiagonalNormal` is ``Independent(Normal(loc, scale), 1)``: the ``diagonal``
family's q(z|x), the base of every flow family and, as
:meth:`DiagonalNormal.standard_normal`, the ``standard`` prior N(0, I). It is the same
distribution as torch's (``base_dist`` is a :class:`~torch.distributions.Normal`, all
of ``Independent``'s methods work, the KL registry sees an ``Independent``); what
differs is the cost of the per-step path, which the textbook VAE spends most of its
non-matrix time on:

- it is built without argument broadcasting or checks (``loc`` and ``log_scale``
  come from heads of one shape);
- it keeps ``log_scale``, so :meth:`~DiagonalNormal.log_prob` and the closed-form KL
  take no logarithm;
- the KL to a diagonal Gaussian (:func:`kl_diagonal_normal`, registered with
  ``torch.distributions.kl.register_kl``) takes fewer elementwise passes than torch's
  generic Normal↔Normal rule, and fewer still against N(0, I).

Every density is the exact closed form; ``tests/test_fast_paths.py`` checks values
and gradients against torch's distributions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal, register_kl
from torch.distributions.kl import _kl_independent_independent

__all__ = ["DiagonalNormal", "kl_diagonal_normal"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_NO_SAMPLE_DIMS = torch.Size()


class DiagonalNormal(Independent):
    """``Independent(Normal(loc, exp(log_scale)), 1)``; batch ``loc.shape[:-1]``, event (D,).

    ``loc`` and ``log_scale`` have one shape (..., D). ``standard`` is True for
    N(0, I) built by :meth:`standard_normal` (its KL and log-density skip the zero location
    and unit scale).

    >>> q = DiagonalNormal(torch.zeros(2, 3), torch.zeros(2, 3))
    >>> z = torch.ones(2, 3)
    >>> torch.allclose(q.log_prob(z), Independent(Normal(0.0, 1.0).expand((2, 3)), 1).log_prob(z))
    True
    """

    standard = False

    def __init__(self, loc: Tensor, log_scale: Tensor) -> None:
        base = Normal.__new__(Normal)
        base.loc, base.scale = loc, log_scale.exp()
        Distribution.__init__(base, loc.shape, validate_args=False)
        self.base_dist = base
        self.reinterpreted_batch_ndims = 1
        self.log_scale = log_scale
        Distribution.__init__(self, loc.shape[:-1], loc.shape[-1:], validate_args=False)

    @classmethod
    def standard_normal(cls, zero: Tensor) -> DiagonalNormal:
        """N(0, I) over R^D from a zero vector ``zero`` (D,) (its device and dtype)."""
        p = cls(zero, zero)
        p.standard = True
        return p

    @property
    def loc(self) -> Tensor:
        return self.base_dist.loc

    @property
    def scale(self) -> Tensor:
        return self.base_dist.scale

    def expand(self, batch_shape: torch.Size, _instance: DiagonalNormal | None = None):
        shape = torch.Size(batch_shape) + self.event_shape
        new = self._get_checked_instance(DiagonalNormal, _instance)
        DiagonalNormal.__init__(new, self.loc.expand(shape), self.log_scale.expand(shape))
        new.standard = self.standard
        return new

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = _NO_SAMPLE_DIMS) -> Tensor:
        """``loc + eps · scale``, eps ~ N(0, I): shape ``sample_shape + batch + (D,)``."""
        loc = self.loc
        # empty().normal_() as torch's Normal draws: the same stream, and torch.compile
        # keeps it (it replaces torch.randn with a generator of its own)
        eps = torch.empty(self._extended_shape(sample_shape), dtype=loc.dtype, device=loc.device)
        return loc + eps.normal_() * self.scale

    def log_prob(self, value: Tensor) -> Tensor:
        """``Σ_d [-(z_d - μ_d)² / (2σ_d²) - log σ_d] - D/2 · log 2π`` (nats), ``value.shape[:-1]``
        broadcast with the batch."""
        const = self.event_shape[0] * _HALF_LOG_2PI
        if self.standard:
            return -0.5 * (value * value).sum(-1) - const
        u = (value - self.loc) / self.scale
        return (-0.5 * u * u - self.log_scale).sum(-1) - const


@register_kl(DiagonalNormal, Independent)
def kl_diagonal_normal(q: DiagonalNormal, p: Independent) -> Tensor:
    """KL(q || p) for a diagonal Gaussian p ``Independent(Normal, 1)``, summed over D, nats:

    ``Σ_d [log σ_p - log σ_q + (σ_q² + (μ_q - μ_p)²) / (2σ_p²) - 1/2]``, with q's
    ``log_scale`` (and p's, when p is a :class:`DiagonalNormal` too); against N(0, I)
    ``Σ_d [(σ_q² + μ_q²) / 2 - log σ_q] - D/2``. Any other ``Independent`` p goes to
    torch's Independent↔Independent rule, as before.
    """
    if isinstance(p, DiagonalNormal) and p.standard:
        spread = torch.addcmul(q.scale * q.scale, q.loc, q.loc)
        return (0.5 * spread - q.log_scale).sum(-1) - 0.5 * q.event_shape[0]
    if not isinstance(p.base_dist, Normal) or p.reinterpreted_batch_ndims != 1:
        return _kl_independent_independent(q, p)
    p_loc, p_scale = p.base_dist.loc, p.base_dist.scale
    p_log_scale = p.log_scale if isinstance(p, DiagonalNormal) else p_scale.log()
    diff = q.loc - p_loc
    spread = torch.addcmul(q.scale * q.scale, diff, diff) * (0.5 / (p_scale * p_scale))
    return (spread - q.log_scale + (p_log_scale - 0.5)).sum(-1)
