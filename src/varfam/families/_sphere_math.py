"""Numerical kernels of the hyperspherical families, in pure torch (float64 inside).

- :func:`log_bessel_iv`: ``log I_v(x)``, the log of the modified Bessel function
  of the first kind, stable for every order and argument the families need
  (a power series for small ``sqrt(v^2 + x^2)``, the uniform (Debye) asymptotic
  expansion, DLMF 10.41.3, otherwise). Its derivative uses
  ``d/dx log I_v(x) = I_{v+1}(x) / I_v(x) + v / x``, so it is differentiable
  to any order.
- :func:`bessel_ratio`: ``A_D(kappa) = I_{D/2}(kappa) / I_{D/2-1}(kappa)``, the
  mean resultant length of a von Mises–Fisher distribution on S^{D-1}.
- :func:`vmf_normalizer`: ``log C_D(kappa)`` and ``A_D(kappa)`` together, what the
  vMF's density, KL and sampler gradient need per step: two Bessel evaluations
  forward, none backward.
- :func:`sample_vmf_w`: Wood's (1994) rejection sampler for the component
  ``w = mu . z`` of a vMF sample, vectorized over a bounded number of rounds,
  with *implicit reparameterization* gradients for ``kappa`` (Figurnov, Mohamed
  & Mnih 2018, "Implicit Reparameterization Gradients"):
  ``dw/dkappa = -(dF(w; kappa)/dkappa) / p(w; kappa)``, the CDF derivative
  computed by tanh-sinh quadrature.
- :func:`householder_rotate`: the reflection that maps ``e_1`` to ``mu``.

Every function here computes in float64 and returns float64; callers cast.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import torch
from torch import Tensor

__all__ = [
    "log_bessel_iv",
    "bessel_ratio",
    "sample_vmf_w",
    "vmf_normalizer",
    "dw_dkappa",
    "householder_rotate",
]

# ------------------------------------------------------------------ log I_v(x)

_SERIES_TERMS = 160  # enough for x < _DEBYE_FROM (the largest term is near k = x / 2)
_DEBYE_FROM = 40.0  # sqrt(v^2 + x^2) at and above which the uniform expansion is used
_DEBYE_TERMS = 12


@lru_cache(maxsize=1)
def _debye_polynomials() -> tuple[tuple[float, ...], ...]:
    """Coefficients of ``q_k(t^2)`` where ``u_k(t) = t^k q_k(t^2)`` (DLMF 10.41.10).

    ``u_{k+1}(t) = t^2 (1 - t^2) u_k'(t) / 2 + 1/8 int_0^t (1 - 5 s^2) u_k(s) ds``,
    ``u_0 = 1``, computed exactly with fractions. Entry ``k`` lists the
    coefficients of ``q_k`` in powers of ``t^2``, lowest first.
    """
    u = [Fraction(1)]  # coefficients in powers of t
    out = [(1.0,)]
    for k in range(1, _DEBYE_TERMS + 1):
        deriv = [i * c for i, c in enumerate(u)][1:]  # u_k'(t)
        nxt = [Fraction(0)] * (len(u) + 3)
        for i, c in enumerate(deriv):  # t^2 (1 - t^2) u' / 2
            nxt[i + 2] += c / 2
            nxt[i + 4] -= c / 2
        for i, c in enumerate(u):  # (1/8) int_0^t (1 - 5 s^2) s^i ds
            nxt[i + 1] += c / (8 * (i + 1))
            nxt[i + 3] -= 5 * c / (8 * (i + 3))
        u = nxt
        out.append(tuple(float(u[k + 2 * j]) for j in range((len(u) - k + 1) // 2)))
    return tuple(out)


@lru_cache(maxsize=64)
def _series_constants(v: float, device: str) -> tuple[Tensor, Tensor]:
    """``2k + v`` and ``-lgamma(k+1) - lgamma(k+v+1)`` for k < _SERIES_TERMS (float64)."""
    k = torch.arange(_SERIES_TERMS, dtype=torch.float64, device=device)
    return 2 * k + v, -torch.lgamma(k + 1) - torch.lgamma(k + v + 1)


def _log_iv_series(v: float, x: Tensor) -> Tensor:
    """``log sum_k (x/2)^(2k+v) / (k! Gamma(k+v+1))`` (x > 0, float64)."""
    powers, consts = _series_constants(v, str(x.device))
    return torch.logsumexp(torch.log(x / 2).unsqueeze(-1) * powers + consts, dim=-1)


@lru_cache(maxsize=8)
def _debye_matrix(device: str) -> tuple[Tensor, Tensor]:
    """(C, k): ``C[k, j]`` the coefficient of ``t^(2j)`` in ``q_k`` (float64), and k = 0..K."""
    polys = _debye_polynomials()
    c = torch.zeros(len(polys), len(polys), dtype=torch.float64)
    for k, coeffs in enumerate(polys):
        c[k, : len(coeffs)] = torch.tensor(coeffs, dtype=torch.float64)
    return c.to(device), torch.arange(len(polys), dtype=torch.float64, device=device)


def _log_iv_debye(v: float, x: Tensor) -> Tensor:
    """Uniform asymptotic expansion of ``log I_v(x)`` in ``R = sqrt(v^2 + x^2)``.

    ``I_v(v z) ~ exp(v eta) / ((2 pi v)^(1/2) (1 + z^2)^(1/4)) sum_k u_k(t) / v^k``
    with ``t = v / R``; written in ``R`` it stays valid as ``v -> 0`` (where it
    becomes Hankel's large-argument expansion), since ``u_k(t) / v^k = q_k(t^2) / R^k``.
    Every ``q_k(t^2) / R^k`` is evaluated at once: a matrix of powers of ``t^2`` times
    the coefficient matrix, a handful of tensor operations whatever the number of terms.
    """
    coeffs, k = _debye_matrix(str(x.device))
    r = torch.sqrt(v * v + x * x)
    t2 = (v / r) ** 2
    q = (t2.unsqueeze(-1) ** k) @ coeffs.T  # (..., K): q_k(t^2)
    total = (q * r.reciprocal().unsqueeze(-1) ** k).sum(-1)
    head = r - 0.5 * torch.log(2 * math.pi * r)
    if v > 0:
        head = head + v * torch.log(x / (v + r))
    return head + torch.log(total)


def _log_iv_value(v: float, x: Tensor) -> Tensor:
    # samples share their concentration, so evaluate each distinct value once
    x, inverse = torch.unique(x.to(torch.float64).clamp_min(1e-300), return_inverse=True)
    return _log_iv_distinct(v, x)[inverse]


def _log_iv_distinct(v: float, x: Tensor) -> Tensor:
    use_series = (v * v + x * x) < _DEBYE_FROM**2
    out = torch.empty_like(x)
    out[use_series] = _log_iv_series(v, x[use_series])
    out[~use_series] = _log_iv_debye(v, x[~use_series])
    return out


class _LogBesselI(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, v: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.v = v
        return _log_iv_value(v, x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        v = ctx.v
        xd = x.to(torch.float64)
        slope = torch.exp(log_bessel_iv(v + 1, xd) - log_bessel_iv(v, xd)) + v / xd
        return (grad * slope).to(x.dtype), None


def log_bessel_iv(v: float, x: Tensor) -> Tensor:
    """``log I_v(x)`` for an order ``v >= 0`` and ``x > 0``, shape of ``x``, float64.

    Accurate to about 1e-12 (relative to ``max(1, |log I_v|)``) for every
    ``v >= 0`` and ``x`` in (1e-300, 1e300); differentiable in ``x`` (to any order).

    >>> x = torch.tensor(2.0)  # I_{1/2}(x) = sqrt(2 / (pi x)) sinh(x)
    >>> exact = math.log(math.sinh(2) / math.sqrt(math.pi))
    >>> round(float(log_bessel_iv(0.5, x)), 10), round(exact, 10)
    (0.7160024297, 0.7160024297)
    """
    if v < 0:
        raise ValueError(f"log_bessel_iv needs an order v >= 0, got {v}")
    return _LogBesselI.apply(x, float(v))


def bessel_ratio(v: float, x: Tensor) -> Tensor:
    """``I_{v+1}(x) / I_v(x)``, float64, differentiable. For ``v = D/2 - 1`` it is ``A_D(x)``."""
    xd = x.to(torch.float64)
    return torch.exp(log_bessel_iv(v + 1, xd) - log_bessel_iv(v, xd))


class _VmfNormalizer(torch.autograd.Function):
    """``(log C_D(kappa), A_D(kappa))`` from two Bessel evaluations; closed-form backward."""

    @staticmethod
    def forward(ctx, kappa: Tensor, dim: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        v = dim / 2 - 1
        log_iv = _log_iv_value(v, kappa)
        mean = torch.exp(_log_iv_value(v + 1, kappa) - log_iv)
        log_c = v * torch.log(kappa) - dim / 2 * math.log(2 * math.pi) - log_iv
        ctx.save_for_backward(kappa, mean)
        ctx.dim = dim
        return log_c, mean

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_log_c: Tensor | None, grad_mean: Tensor | None):  # type: ignore[override]
        kappa, mean = ctx.saved_tensors
        grad = torch.zeros_like(kappa)
        if grad_log_c is not None:  # d log C / d kappa = v / kappa - d log I_v / d kappa = -A
            grad = grad - mean * grad_log_c
        if grad_mean is not None:  # A' = 1 - A^2 - (D - 1) A / kappa
            grad = grad + grad_mean * (1 - mean * mean - (ctx.dim - 1) * mean / kappa)
        return grad, None


def vmf_normalizer(kappa: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """``(log C_D(kappa), A_D(kappa))`` of vMF on S^{dim-1}: float64, shape of ``kappa``.

    ``log C_D(k) = (D/2-1) log k - (D/2) log(2 pi) - log I_{D/2-1}(k)`` and the mean
    resultant length ``A_D(k) = I_{D/2}(k) / I_{D/2-1}(k)``, from one evaluation of each
    Bessel function; the derivatives are closed forms in ``A`` (``d log C/dk = -A``,
    ``dA/dk = 1 - A^2 - (D-1) A / k``), so the backward pass evaluates no Bessel function.
    Differentiable once.

    >>> log_c, a = vmf_normalizer(torch.tensor([2.0], dtype=torch.float64), 3)
    >>> round(float(log_c), 10), round(float(a), 10)  # D = 3: C = k / (4 pi sinh k)
    (-3.126244439, 0.5373147207)
    >>> round(1 / math.tanh(2.0) - 1 / 2.0, 10)  # A_3 = coth k - 1 / k
    0.5373147207
    """
    return _VmfNormalizer.apply(kappa.to(torch.float64), dim)


# ------------------------------------------------------------------ Wood's sampler

_MAX_ROUNDS = 100


def _wood_proposal(kappa: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """One round of Wood's (1994) proposal: returns ``(w, accept)`` for each ``kappa``.

    Written with the closed forms of ``1 - x0 w`` and ``w - x0`` so that nothing
    cancels for large ``kappa``.
    """
    m1 = dim - 1.0
    b = m1 / (2 * kappa + torch.sqrt(4 * kappa * kappa + m1 * m1))
    half = torch.full_like(kappa, m1 / 2)
    eps = torch.distributions.Beta(half, half).sample()
    eps = eps.clamp(torch.finfo(eps.dtype).tiny, 1 - torch.finfo(eps.dtype).eps)
    den = 1 - (1 - b) * eps
    w = (1 - (1 + b) * eps) / den
    # kappa (w - x0) + (m-1) log((1 - x0 w) / (1 - x0^2)), both ratios in closed form
    log_ratio = kappa * 2 * b * (1 - 2 * eps) / ((1 + b) * den) + m1 * torch.log(
        (1 + b) / (2 * den)
    )
    accept = torch.log(torch.rand_like(kappa)) <= log_ratio
    return w, accept


def _wood_sample(kappa: Tensor, dim: int) -> Tensor:
    """Exact samples of ``w`` (same shape as ``kappa``), by rounds until all are accepted."""
    w = torch.empty_like(kappa)
    pending = torch.arange(kappa.numel(), device=kappa.device)
    flat_kappa = kappa.reshape(-1)
    flat_w = w.view(-1)
    for _ in range(_MAX_ROUNDS):
        if pending.numel() == 0:
            return w
        prop, accept = _wood_proposal(flat_kappa[pending], dim)
        flat_w[pending[accept]] = prop[accept]
        pending = pending[~accept]
    if pending.numel() == 0:
        return w
    raise RuntimeError(  # acceptance is above 1/2 per round, so this is ~2^-100
        f"vMF rejection sampler did not finish after {_MAX_ROUNDS} rounds"
    )


# tanh-sinh nodes on (0, 1): x = sigmoid(pi sinh t); distances from both ends stay exact
_TS_STEP = 1.0 / 32
_TS_HALF_WIDTH = 3.3
_CHUNK = 8192


@lru_cache(maxsize=8)
def _tanh_sinh(device: str) -> tuple[Tensor, Tensor, Tensor]:
    """(log x, log(1 - x), log weight) of the tanh-sinh rule on (0, 1)."""
    n = int(_TS_HALF_WIDTH / _TS_STEP)
    t = torch.arange(-n, n + 1, dtype=torch.float64, device=device) * _TS_STEP
    s = math.pi * torch.sinh(t)
    log_x = torch.nn.functional.logsigmoid(s)
    log_1mx = torch.nn.functional.logsigmoid(-s)
    log_w = math.log(_TS_STEP) + torch.log(math.pi * torch.cosh(t)) + log_x + log_1mx
    return log_x, log_1mx, log_w


def dw_dkappa(w: Tensor, kappa: Tensor, dim: int, mean: Tensor | None = None) -> Tensor:
    """``dw/dkappa`` at a fixed CDF value of the vMF marginal of ``w``.

    The marginal is ``p(w) ∝ e^{kappa w} (1 - w^2)^{(D-3)/2}`` on (-1, 1).

    ``dF/dkappa = int_{-1}^w (s - A) p(s) ds`` with ``A = E[w] = A_D(kappa)``; since
    it also equals ``-int_w^1 (s - A) p(s) ds``, the side on which ``s - A`` keeps
    one sign is integrated (no cancellation), as ``int |s - A| p(s)/p(w) ds``,
    with tanh-sinh quadrature that handles the ``(1 - s^2)^{(D-3)/2}`` endpoint
    singularity and the sharp ``e^{kappa s}`` peak near ``w``. Float64, shape of ``w``.
    ``mean``: ``A_D(kappa)`` where the caller has it (else it is computed).
    """
    w = w.to(torch.float64)
    kappa = kappa.to(torch.float64)
    alpha = (dim - 3) / 2
    if mean is None:
        mean = bessel_ratio(dim / 2 - 1, kappa).detach()
    mean = mean.to(torch.float64).expand(w.shape)
    log_x, log_1mx, log_wt = _tanh_sinh(str(w.device))
    flat_w, flat_k, flat_a = w.reshape(-1, 1), kappa.reshape(-1, 1), mean.reshape(-1, 1)
    out = torch.empty(flat_w.shape[0], dtype=torch.float64, device=w.device)
    for lo in range(0, flat_w.shape[0], _CHUNK):
        ww, kk, aa = (t[lo : lo + _CHUNK] for t in (flat_w, flat_k, flat_a))
        upper = ww >= aa
        span = torch.where(upper, 1 - ww, 1 + ww)  # length of the integrated side
        u = span * torch.exp(log_x)  # distance from w
        s = torch.where(upper, ww + u, ww - u)
        # (1 - s^2) / (1 - w^2) with the far end's distance exact: span * (1 - x)
        near = torch.where(upper, 1 + s, 1 - s) / torch.where(upper, 1 + ww, 1 - ww)
        log_ratio = log_1mx + torch.log(near)
        log_g = torch.where(upper, kk * u, -kk * u) + alpha * log_ratio
        gap = torch.where(upper, s - aa, aa - s).clamp_min(0)
        terms = torch.log(gap) + log_g + torch.log(span) + log_wt
        out[lo : lo + _CHUNK] = torch.exp(torch.logsumexp(terms, dim=-1))
    return out.view(w.shape)


class _ImplicitW(torch.autograd.Function):
    """Identity on ``w`` whose backward gives ``grad_kappa = grad_w * dw/dkappa``."""

    @staticmethod
    def forward(ctx, kappa: Tensor, w: Tensor, dim: int,  # type: ignore[override]
                mean: Tensor | None) -> Tensor:
        ctx.save_for_backward(kappa, w, mean)
        ctx.dim = dim
        return w.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        kappa, w, mean = ctx.saved_tensors
        return grad * dw_dkappa(w, kappa, ctx.dim, mean).to(grad.dtype), None, None, None


def sample_vmf_w(kappa: Tensor, dim: int, mean: Tensor | None = None) -> Tensor:
    """``w = mu . z`` for z ~ vMF(mu, kappa) on S^{dim-1}: float64, shape of ``kappa``.

    Exact (Wood 1994); differentiable in ``kappa`` by implicit reparameterization.
    ``mean``: ``A_D(kappa)`` where the caller has it (broadcastable to ``kappa``), so that
    the backward pass evaluates no Bessel function.
    """
    kappa = kappa.to(torch.float64)
    with torch.no_grad():
        w = _wood_sample(kappa.detach(), dim)
    if mean is not None:
        mean = mean.detach().to(torch.float64).expand(kappa.shape)
    return _ImplicitW.apply(kappa, w, dim, mean)


# ------------------------------------------------------------------ Householder


def householder_rotate(y: Tensor, loc: Tensor) -> Tensor:
    """Reflect ``y`` (..., D) by the Householder map sending ``e_1`` to the unit ``loc`` (..., D).

    ``H y = y - 2 u (u . y) / (u . u)`` with ``u = e_1 - loc``; ``H = I`` when ``loc = e_1``.
    """
    u = -loc.clone()
    u[..., 0] = u[..., 0] + 1
    uu = (u * u).sum(-1, keepdim=True).clamp_min(torch.finfo(u.dtype).tiny)
    return y - 2 * u * (u * y).sum(-1, keepdim=True) / uu
