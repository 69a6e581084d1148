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
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import VarfamError
from ..registry import FAMILIES
from .flows import (
    FlowFamily,
    FlowTransform,
    check_positive,
    one_plus_tanh_product,
    solve_x_plus_tanh,
)

__all__ = ["SylvesterTransform", "SylvesterFlow", "householder_product"]


def householder_product(v: Tensor) -> Tensor:
    """Q = H_1 H_2 ... H_n with H_k = I - 2 v_k v_k^T / |v_k|^2; ``v`` (B, n, D) → Q (B, D, D)."""
    v = v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(1e-12)
    d = v.shape[-1]
    q = torch.eye(d, dtype=v.dtype, device=v.device).expand(*v.shape[:-2], d, d)
    for k in range(v.shape[-2]):
        vk = v[..., k, :]
        q = q - 2 * (q @ vk.unsqueeze(-1)) * vk.unsqueeze(-2)
    return q


class SylvesterTransform(FlowTransform):
    """f(z) = z + Q R tanh(R~ Q^T z + b).

    Shapes: ``q`` (B, D, M) with orthonormal columns; ``r``, ``r_tilde`` (B, M, M)
    upper triangular with ``r_ii r~_ii > -1``; ``b`` (B, M). ``one_plus_diag``
    (B, M), optional, is ``1 + r_ii r~_ii`` computed more accurately than the
    product (see :func:`one_plus_tanh_product`); det J uses it as
    ``prod_i (tanh^2(a_i) + (1 + r_ii r~_ii) sech^2(a_i))``.
    """

    def __init__(
        self,
        q: Tensor,
        r: Tensor,
        r_tilde: Tensor,
        b: Tensor,
        one_plus_diag: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.q, self.r, self.r_tilde, self.b = q, r, r_tilde, b
        if one_plus_diag is None:
            diag = r.diagonal(dim1=-2, dim2=-1) * r_tilde.diagonal(dim1=-2, dim2=-1)
            one_plus_diag = 1 + diag
        self.one_plus_diag = one_plus_diag

    def _log_det(self, t: Tensor) -> Tensor:
        t2 = t * t
        return torch.log(t2 + self.one_plus_diag * (1 - t2)).sum(-1)

    def forward_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # four matrix-vector products; cheaper than forming Q R and R~ Q^T once per step
        v = (x.unsqueeze(-2) @ self.q).squeeze(-2)  # Q^T x, (..., B, M)
        t = torch.tanh((self.r_tilde @ v.unsqueeze(-1)).squeeze(-1) + self.b)
        y = x + (self.q @ (self.r @ t.unsqueeze(-1))).squeeze(-1)
        return y, self._log_det(t)

    def inverse_and_log_det(self, y: Tensor) -> tuple[Tensor, Tensor]:
        # In Q's basis, v = Q^T z solves v' = v + R tanh(R~ v + b), an upper-triangular
        # system; the part of z orthogonal to Q's columns is left unchanged.
        vy = (y.unsqueeze(-2) @ self.q).squeeze(-2)  # (..., B, M)
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
        x = y + (self.q @ (v_all - vy).unsqueeze(-1)).squeeze(-1)
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

    def _upper(self, off: Tensor, diag: Tensor) -> Tensor:
        """Upper-triangular (..., M, M) from strict-upper entries (..., M(M-1)/2) and a diagonal."""
        m = self.vectors
        r = off.new_zeros(*off.shape[:-1], m, m)
        r[..., self._triu[0], self._triu[1]] = off
        return r + torch.diag_embed(torch.tanh(diag))  # r_ii = tanh(raw) in (-1, 1)

    def transforms(self, h: Tensor) -> list[SylvesterTransform]:
        d, m = self.latent_dim, self.vectors
        # all K steps at once: (B, K, ...) tensors, sliced per step at the end
        params = self.heads(h).unflatten(-1, (self.flow_steps, sum(self._sizes)))
        q_raw, r_off, rt_off, r_diag, rt_diag, b = params.split(self._sizes, -1)
        if self.kind == "householder":
            q = householder_product(q_raw.unflatten(-1, (self.householder, d)))
        else:
            q = torch.linalg.qr(q_raw.unflatten(-1, (d, m))).Q
        r = self._upper(torch.stack([r_off, rt_off], -2), torch.stack([r_diag, rt_diag], -2))
        one_plus = one_plus_tanh_product(r_diag, rt_diag)  # 1 + r_ii r~_ii > 0
        # unbind (not indexing): its backward stacks the K gradients instead of filling
        # K zero tensors of the full size
        steps = zip(
            q.unbind(-3), r.unbind(-4), b.unbind(-2), one_plus.unbind(-2), strict=True
        )
        return [
            SylvesterTransform(q_k, r_k[..., 0, :, :], r_k[..., 1, :, :], b_k, one_plus_k)
            for q_k, r_k, b_k, one_plus_k in steps
        ]
