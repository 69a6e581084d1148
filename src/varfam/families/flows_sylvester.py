"""Sylvester normalizing flows, amortized (orthogonal and Householder).

van den Berg, Hasenclever, Tomczak & Welling 2018, "Sylvester Normalizing Flows
for Variational Inference" (UAI). Each step is

    f(z) = z + Q R tanh(R~ Q^T z + b),

with Q (D, M) having orthonormal columns and R, R~ (M, M) upper triangular, so
that det J = prod_i (1 + sech^2(a_i) r_ii r~_ii) (Sylvester's determinant identity).
``r_ii = tanh(.)`` and ``r~_ii = tanh(.)`` give ``r_ii r~_ii > -1``, which makes the
map invertible for the tanh nonlinearity; ``1 + r_ii r~_ii`` is evaluated in a form
that stays positive in floating point when both diagonals saturate. Q, R, R~ and b
are linear heads of h.

Q is a product of Householder reflections (``kind="householder"``, M = D) or the
orthonormal factor of an amortized D x M matrix (``kind="orthogonal"``). The paper
orthogonalizes with an iterative Bjorck procedure; here a QR decomposition
(``torch.linalg.qr``) gives columns orthonormal to machine precision, which keeps
the log-determinant exact.

The inverse has no closed form, but in the basis of Q the map is triangular: the
i-th coordinate of the output depends on coordinates >= i only, so it is inverted
by M one-dimensional monotone solves, from the last coordinate to the first.

The forward pass, the one training runs, never forms a matrix per example: a
Householder Q is applied as its reflections (two small ops each), R and R~ stay as
their packed strictly-upper entries and diagonals (:class:`PackedUpper`, a gather,
a product and a scatter-add per product), and a dense Q is applied with elementwise
products and sums rather than batched products of 20 x 20 matrices. The dense
matrices remain available (``q``, ``r``, ``r_tilde``) for the inverse and for tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varfam.errors import VarfamError
from varfam.families.flows import (
    FlowFamily,
    FlowTransform,
    check_positive,
    one_plus_tanh_product,
    solve_x_plus_tanh,
)
from varfam.parts import network_precision
from varfam.registry import FAMILIES

__all__ = [
    "SylvesterTransform",
    "SylvesterFlow",
    "householder_product",
    "Householder",
    "DenseOrthogonal",
    "PackedUpper",
]


def householder_product(v: Tensor) -> Tensor:
    """Q = H_1 H_2 ... H_n with H_k = I - 2 v_k v_k^T / |v_k|^2; ``v`` (B, n, D) → Q (B, D, D)."""
    v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(1e-12)
    d = v.shape[-1]
    q = torch.eye(d, dtype=v.dtype, device=v.device).expand(*v.shape[:-2], d, d)
    for k in range(v.shape[-2]):
        vk = v[..., k, :]
        q = q - 2 * (q @ vk.unsqueeze(-1)) * vk.unsqueeze(-2)
    return q


def _reflect(x: Tensor, v: Tensor) -> Tensor:
    """``(I - 2 v v^T) x`` for unit real ``v`` (B, D) and ``x`` (..., B, D): three ops
    (``linalg.vecdot`` and ``unsqueeze`` would be four, each with its backward)."""
    return torch.addcmul(x, (x * v).sum(-1, keepdim=True), v, value=-2.0)


class Householder:
    """Q = H_1 ... H_n (M = D columns) applied as reflections: ``v`` (B, n, D), any length
    (``unit=True``: already normalized, as :meth:`SylvesterFlow.transforms` does for all
    steps at once)."""

    def __init__(self, v: Tensor, unit: bool = False) -> None:
        self.raw = v
        self.units = (v if unit else F.normalize(v, dim=-1, eps=1e-12)).unbind(-2)

    def transpose_apply(self, x: Tensor) -> Tensor:
        """``Q^T x = H_n ... H_1 x`` for ``x`` (..., B, D)."""
        for v in self.units:
            x = _reflect(x, v)
        return x

    def apply(self, w: Tensor) -> Tensor:
        """``Q w = H_1 ... H_n w`` for ``w`` (..., B, D)."""
        for v in reversed(self.units):
            w = _reflect(w, v)
        return w

    def dense(self) -> Tensor:
        return householder_product(self.raw)


class DenseOrthogonal:
    """Q (B, D, M) with orthonormal columns, applied with elementwise products and sums."""

    def __init__(self, q: Tensor) -> None:
        self.q = q

    def transpose_apply(self, x: Tensor) -> Tensor:
        """``Q^T x`` (..., B, M) for ``x`` (..., B, D)."""
        return (x.unsqueeze(-1) * self.q).sum(-2)

    def apply(self, w: Tensor) -> Tensor:
        """``Q w`` (..., B, D) for ``w`` (..., B, M)."""
        return (self.q * w.unsqueeze(-2)).sum(-1)

    def dense(self) -> Tensor:
        return self.q


class PackedUpper:
    """Upper-triangular R (B, M, M) held as ``diag`` (B, M) and its strictly-upper entries
    ``off`` (B, M(M-1)/2) at ``rows``, ``cols`` (``torch.triu_indices(M, M, 1)``)."""

    def __init__(self, diag: Tensor, off: Tensor, rows: Tensor, cols: Tensor) -> None:
        self.diag, self.off, self.rows, self.cols = diag, off, rows, cols

    def matvec(self, t: Tensor, plus: Tensor | None = None) -> Tensor:
        """``R t`` (..., B, M) for ``t`` (..., B, M): ``r_ii t_i + sum_{j>i} r_ij t_j``; with
        ``plus`` (B, M), ``R t + plus`` (in the same ops)."""
        above = self.off * t.index_select(-1, self.cols)
        own = self.diag * t if plus is None else torch.addcmul(plus, self.diag, t)
        return own.index_add(-1, self.rows, above)

    def dense(self) -> Tensor:
        m = self.diag.shape[-1]
        r = self.off.new_zeros(*self.off.shape[:-1], m, m)
        r[..., self.rows, self.cols] = self.off
        return r + torch.diag_embed(self.diag)

    @classmethod
    def of(cls, r: Tensor) -> PackedUpper:
        """The packed form of a dense upper-triangular ``r`` (B, M, M)."""
        rows, cols = torch.triu_indices(r.shape[-1], r.shape[-1], 1, device=r.device)
        return cls(r.diagonal(dim1=-2, dim2=-1), r[..., rows, cols], rows, cols)


class SylvesterTransform(FlowTransform):
    """f(z) = z + Q R tanh(R~ Q^T z + b).

    Shapes: ``q`` (B, D, M) with orthonormal columns, or a :class:`Householder` /
    :class:`DenseOrthogonal` that applies it; ``r``, ``r_tilde`` (B, M, M) upper
    triangular with ``r_ii r~_ii > -1``, or their :class:`PackedUpper` forms; ``b``
    (B, M). ``one_plus_diag`` (B, M), optional, is ``1 + r_ii r~_ii`` computed more
    accurately than the product (see :func:`one_plus_tanh_product`); det J uses it as
    ``prod_i (tanh^2(a_i) + (1 + r_ii r~_ii) sech^2(a_i))``.
    """

    def __init__(
        self,
        q: Tensor | Householder | DenseOrthogonal,
        r: Tensor | PackedUpper,
        r_tilde: Tensor | PackedUpper,
        b: Tensor,
        one_plus_diag: Tensor | None = None,
        one_minus_c: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.orthogonal = DenseOrthogonal(q) if isinstance(q, Tensor) else q
        self.upper = PackedUpper.of(r) if isinstance(r, Tensor) else r
        self.upper_tilde = PackedUpper.of(r_tilde) if isinstance(r_tilde, Tensor) else r_tilde
        self.b = b
        if one_plus_diag is None:
            one_plus_diag = 1 + self.upper.diag * self.upper_tilde.diag
        self.one_plus_diag = one_plus_diag
        self.one_minus_c = one_minus_c  # 1 - (1 + r_ii r~_ii), given for all steps at once

    @property
    def q(self) -> Tensor:
        """Q as a dense (B, D, M) matrix."""
        return self.orthogonal.dense()

    @property
    def r(self) -> Tensor:
        return self.upper.dense()

    @property
    def r_tilde(self) -> Tensor:
        return self.upper_tilde.dense()

    def _log_det(self, t: Tensor) -> Tensor:
        # log prod_i (t_i^2 + c_i (1 - t_i^2)) = sum_i log(c_i + (1 - c_i) t_i^2), c = 1 + r r~
        c = self.one_plus_diag
        one_minus_c = 1 - c if self.one_minus_c is None else self.one_minus_c
        return torch.log(torch.addcmul(c, one_minus_c, t * t)).sum(-1)

    def forward_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:
        v = self.orthogonal.transpose_apply(x)  # Q^T x, (..., B, M)
        t = torch.tanh(self.upper_tilde.matvec(v, plus=self.b))
        y = x + self.orthogonal.apply(self.upper.matvec(t))
        return y, self._log_det(t)

    def inverse_and_log_det(self, y: Tensor) -> tuple[Tensor, Tensor]:
        # In Q's basis, v = Q^T z solves v' = v + R tanh(R~ v + b), an upper-triangular
        # system; the part of z orthogonal to Q's columns is left unchanged.
        vy = self.orthogonal.transpose_apply(y)  # (..., B, M)
        m = vy.shape[-1]
        r, rt = self.r, self.r_tilde
        v: list[Tensor] = [vy[..., 0]] * m  # placeholders, filled from the last coordinate
        t: list[Tensor] = [vy[..., 0]] * m
        for i in range(m - 1, -1, -1):
            later = slice(i + 1, m)
            if i + 1 < m:
                v_later = torch.stack(v[later], -1)
                t_later = torch.stack(t[later], -1)
                c = self.b[..., i] + (rt[..., i, later] * v_later).sum(-1)
                target = vy[..., i] - (r[..., i, later] * t_later).sum(-1)
            else:
                c, target = self.b[..., i], vy[..., i]
            v[i] = solve_x_plus_tanh(
                target, r[..., i, i], rt[..., i, i], c, self.one_plus_diag[..., i]
            )
            t[i] = torch.tanh(rt[..., i, i] * v[i] + c)
        v_all, t_all = torch.stack(v, -1), torch.stack(t, -1)
        x = y + self.orthogonal.apply(v_all - vy)
        return x, self._log_det(t_all)


@FAMILIES.register(
    "sylvester",
    "diagonal Gaussian followed by K amortized Sylvester flows z + Q R tanh(R~ Q^T z + b)",
    "van den Berg, Hasenclever, Tomczak & Welling 2018, "
    "Sylvester Normalizing Flows for Variational Inference",
)
class SylvesterFlow(FlowFamily):
    """K Sylvester steps; Q, R, R~ and b of every step are linear heads of h.

    Options: ``flow_steps`` (K, default 4); ``kind`` ``"householder"`` (default) or
    ``"orthogonal"``; ``householder``, the number of reflections per step for the
    Householder kind (default 4); ``vectors``, the number M <= D of orthonormal
    columns for the orthogonal kind (default D).

    >>> fam = SylvesterFlow(400, 20, kind="orthogonal", vectors=8)
    >>> q = fam(torch.randn(3, 400))
    >>> q.log_prob(q.rsample((2,))).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        feature_dim: int,
        latent_dim: int,
        *,
        flow_steps: int = 4,
        kind: str = "householder",
        householder: int = 4,
        vectors: int | None = None,
    ) -> None:
        super().__init__(feature_dim, latent_dim, flow_steps)
        if kind not in ("householder", "orthogonal"):
            raise VarfamError(
                f"sylvester option kind must be 'householder' or 'orthogonal', got {kind!r}"
            )
        self.kind = kind
        d = latent_dim
        if kind == "householder":
            self.householder = check_positive("householder", householder)
            m = d
            q_size = self.householder * d
        else:
            m = d if vectors is None else check_positive("vectors", vectors)
            if m > d:
                raise VarfamError(
                    f"sylvester option vectors must be at most latent_dim={d}, got {m}"
                )
            q_size = d * m
        self.vectors = m
        self.register_buffer("_triu", torch.triu_indices(m, m, 1), persistent=False)
        n_off = m * (m - 1) // 2
        # per step: Q's parameters, R and R~ off-diagonals, both diagonals, b
        self._sizes = [q_size, n_off, n_off, m, m, m]
        self.heads = nn.Linear(feature_dim, self.flow_steps * sum(self._sizes))

    def transforms(self, h: Tensor) -> list[SylvesterTransform]:
        d, m = self.latent_dim, self.vectors
        # all K steps at once: (B, K, ...) tensors, unbound per step at the end (unbind,
        # not indexing: its backward stacks the K gradients instead of filling K zero
        # tensors of the full size)
        with network_precision(h.device.type):  # bf16 in bf16 training, like the encoder
            raw = self.heads(h)
        params = raw.to(h.dtype).unflatten(-1, (self.flow_steps, sum(self._sizes)))
        q_raw, r_off, rt_off, r_diag, rt_diag, b = params.split(self._sizes, -1)
        if self.kind == "householder":
            units = F.normalize(q_raw.unflatten(-1, (self.householder, d)), dim=-1, eps=1e-12)
            orthogonal = [Householder(v, unit=True) for v in units.unbind(-3)]
        else:
            q = torch.linalg.qr(q_raw.unflatten(-1, (d, m))).Q
            orthogonal = [DenseOrthogonal(q_k) for q_k in q.unbind(-3)]
        rows, cols = self._triu
        one_plus = one_plus_tanh_product(r_diag, rt_diag)  # 1 + r_ii r~_ii > 0
        steps = zip(orthogonal, torch.tanh(r_diag).unbind(-2), r_off.unbind(-2),
                    torch.tanh(rt_diag).unbind(-2), rt_off.unbind(-2), b.unbind(-2),
                    one_plus.unbind(-2), (1 - one_plus).unbind(-2), strict=True)
        return [  # r_ii = tanh(raw) in (-1, 1)
            SylvesterTransform(q_k, PackedUpper(rd, ro, rows, cols),
                               PackedUpper(rtd, rto, rows, cols), b_k, one_plus_k,
                               one_minus_k)
            for q_k, rd, ro, rtd, rto, b_k, one_plus_k, one_minus_k in steps
        ]
