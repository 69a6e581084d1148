"""Shared machinery of the flow families: transforms with exact log-determinants.

A flow family is a diagonal Gaussian base q0(z0|x) followed by K invertible maps
whose parameters come from the encoder features ``h``:

    z0 ~ N(mu(h), diag(sigma(h)^2)),   z = f_K(... f_1(z0; h) ...; h),
    log q(z|x) = log q0(z0|x) - sum_k log|det df_k/dz_{k-1}|.

:class:`FlowFamily` returns a ``torch.distributions.TransformedDistribution`` over
the base ``Independent(Normal)``. Every step is a :class:`FlowTransform`, a
``torch.distributions.Transform`` with event_dim 1 that

* caches the last ``(x, y)`` pair (torch's ``cache_size=1``) and the log|det J| it
  computed with ``y``, so ``q.log_prob(q.rsample())`` -- what the ELBO needs --
  costs no inverse and no second pass through the step's network;
* implements an exact inverse for any ``y`` (closed form, or a robust numerical
  solve for maps without one), so ``log_prob`` of an arbitrary ``z`` is exact and
  differentiable with respect to ``z`` and to every parameter.

Shapes: parameters carry the batch ``(B,)``; points are ``(*sample, B, D)`` and
log-determinants ``(*sample, B)``, in nats.

The flows themselves live in ``flows_planar`` (planar, radial), ``flows_sylvester``
and ``flows_autoregressive`` (IAF, Real NVP).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution, TransformedDistribution, constraints
from torch.distributions.transforms import Transform

from varfam.errors import VarfamError
from varfam.families.base import Family
from varfam.families.gaussian import DiagonalGaussian

__all__ = [
    "FlowTransform",
    "FlowFamily",
    "solve_x_plus_tanh",
    "one_plus_tanh_product",
    "check_positive",
]


def check_positive(name: str, value: object) -> int:
    """Return ``value`` if it is a positive integer, else raise a one-line :class:`VarfamError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VarfamError(f"family option {name} must be a positive integer, got {value!r}")
    return value


class FlowTransform(Transform):
    """An invertible map of R^D with per-example parameters (batch ``(B,)``), event_dim 1.

    Subclasses implement :meth:`forward_and_log_det` (``x`` → ``y`` and
    log|det dy/dx|, shapes ``(..., B, D)`` and ``(..., B)``) and
    :meth:`inverse_and_log_det` (``y`` → ``x`` and the same log|det dy/dx| at ``x``).
    Both directions remember their log-determinant for the ``(x, y)`` pair they
    return, so ``TransformedDistribution.log_prob`` does not evaluate the step again.
    """

    domain = constraints.independent(constraints.real, 1)
    codomain = constraints.independent(constraints.real, 1)
    bijective = True

    def __init__(self) -> None:
        super().__init__(cache_size=1)
        self._ldj_cache: tuple[Tensor, Tensor, Tensor] | None = None

    def forward_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse_and_log_det(self, y: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _call(self, x: Tensor) -> Tensor:
        y, ldj = self.forward_and_log_det(x)
        self._ldj_cache = (x, y, ldj)
        return y

    def _inverse(self, y: Tensor) -> Tensor:
        x, ldj = self.inverse_and_log_det(y)
        self._ldj_cache = (x, y, ldj)
        return x

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        cached = self._ldj_cache
        if cached is not None and cached[0] is x and cached[1] is y:
            return cached[2]
        return self.forward_and_log_det(x)[1]


def one_plus_tanh_product(a: Tensor, b: Tensor) -> Tensor:
    """``1 + tanh(a) tanh(b) = 2 [σ(2a) σ(2b) + σ(-2a) σ(-2b)]``, accurate where it nears 0.

    A sum of two positive products (``1 ± tanh x = 2 σ(±2x)``), so nothing cancels when
    ``tanh(a) tanh(b)`` rounds to -1 (|a|, |b| above ~9 in float32, ~19 in float64): it
    stays positive until the products underflow (|a|, |b| above ~40 in float32), to a
    few units of rounding (the form ``cosh(a + b) / (cosh a cosh b)`` through log-cosh,
    used before, gave the same values in about twice the ops).

    >>> one_plus_tanh_product(torch.tensor([0.0, 10.0]), torch.tensor([1.0, -10.0]))
    tensor([1.0000e+00, 8.2446e-09])
    """
    ab = torch.stack((a, b))
    s = torch.sigmoid(torch.stack((ab, ab.neg())).mul_(2.0))  # [σ(2a), σ(2b)], [σ(-2a), σ(-2b)]
    return s[:, 0].mul(s[:, 1]).sum(0).mul_(2.0)


def solve_x_plus_tanh(
    target: Tensor,
    p: Tensor,
    q: Tensor,
    s: Tensor,
    one_plus_pq: Tensor | None = None,
    max_iter: int = 200,
) -> Tensor:
    """Solve ``x + p * tanh(q * x + s) = target`` for ``x``, elementwise, where ``p * q > -1``.

    The left side is strictly increasing in ``x`` (derivative ``1 + p q sech^2 =
    tanh^2 + (1 + p q) sech^2 > 0``; pass ``one_plus_pq`` when the caller knows
    ``1 + p q`` more accurately than the product) and the root lies in
    ``[target - |p|, target + |p|]``; a Newton iteration that falls back to
    bisection whenever it leaves the (shrinking) bracket finds it to machine
    precision, typically in a handful of iterations. The
    root is found without gradients; a final Newton step taken with gradients makes
    the result differentiable with the implicit-function-theorem derivatives
    (``dx = -dg / g'(x)`` at the root) with respect to every input.
    """
    if one_plus_pq is None:
        one_plus_pq = 1 + p * q
    target, p, q, s, one_plus_pq = torch.broadcast_tensors(target, p, q, s, one_plus_pq)

    def slope(th: Tensor) -> Tensor:
        th2 = th * th
        return th2 + one_plus_pq.detach() * (1 - th2)

    with torch.no_grad():
        t0, p0, q0, s0 = target.detach(), p.detach(), q.detach(), s.detach()
        lo, hi = t0 - p0.abs(), t0 + p0.abs()
        x = torch.minimum(torch.maximum(t0 - p0 * torch.tanh(q0 * t0 + s0), lo), hi)
        eps = 4 * torch.finfo(x.dtype).eps
        scale = 1 + t0.abs() + p0.abs()  # g is known to about eps * scale
        for _ in range(max_iter):
            th = torch.tanh(q0 * x + s0)
            g = x + p0 * th - t0
            hi = torch.where(g > 0, x, hi)
            lo = torch.where(g < 0, x, lo)
            step = g / slope(th)
            new = x - step
            # a Newton step is kept if it lands strictly inside the bracket (which then
            # shrinks) or is already negligible; otherwise bisect. NaN steps bisect.
            small = step.abs() <= eps * scale
            new = torch.where(small | ((new > lo) & (new < hi)), new, 0.5 * (lo + hi))
            converged = small | (g == 0) | (hi - lo <= eps * scale)
            x = torch.where(g == 0, x, new)
            if bool(converged.all()):
                break
    th = torch.tanh(q * x + s)
    g = x + p * th - target
    return x - g / slope(th.detach()).clamp_min(torch.finfo(x.dtype).tiny)


class FlowFamily(Family):
    """Base of the flow families: a diagonal Gaussian base and ``flow_steps`` transforms of h.

    Subclasses implement :meth:`transforms` (``h`` (B, F) → a list of
    :class:`FlowTransform` with batch ``(B,)``). ``forward(h)`` returns a
    ``TransformedDistribution`` with batch ``(B,)`` and event ``(D,)``; its
    ``log_prob`` is in nats and exact for every ``z`` in R^D.
    """

    def __init__(self, feature_dim: int, latent_dim: int, flow_steps: int) -> None:
        super().__init__(feature_dim, latent_dim)
        self.flow_steps = check_positive("flow_steps", flow_steps)
        self.base = DiagonalGaussian(feature_dim, latent_dim)

    def transforms(self, h: Tensor) -> list[FlowTransform]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, h: Tensor) -> Distribution:
        return TransformedDistribution(self.base(h), self.transforms(h))

    def location(self, h: Tensor) -> Tensor:
        """The flow applied to the base mean, shape (B, D): a central point, not the mean."""
        z = self.base.location(h)
        for transform in self.transforms(h):
            z = transform(z)
        return z
