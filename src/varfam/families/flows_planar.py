"""Planar and radial flows, amortized: every step's parameters are linear heads of h.

Rezende & Mohamed 2015, "Variational Inference with Normalizing Flows" (ICML).
Neither map has a closed-form inverse; ``log_prob`` of an arbitrary z inverts the
planar map with a 1-D monotone root solve along w and the radial map with the
closed-form solution of a quadratic in the radius.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varfam.families.flows import FlowFamily, FlowTransform, solve_x_plus_tanh
from varfam.registry import FAMILIES

__all__ = ["PlanarTransform", "RadialTransform", "PlanarFlow", "RadialFlow"]


class PlanarTransform(FlowTransform):
    """f(z) = z + u_hat * tanh(w.z + b), with u (B, D), w (B, D), b (B,).

    Invertibility: u is replaced by ``u_hat = u + (m(w.u) - w.u) w / |w|^2`` with
    ``m(x) = -1 + softplus(x)``, so that ``w.u_hat = m(w.u) > -1``. Then
    ``det J = 1 + w.u_hat * sech^2(a)`` (``a = w.z + b``) is evaluated as
    ``tanh^2(a) + softplus(w.u) * sech^2(a) > 0``, which stays accurate as
    ``w.u_hat`` approaches -1.
    """

    def __init__(self, u: Tensor, w: Tensor, b: Tensor) -> None:
        super().__init__()
        wu = (w * u).sum(-1)
        self.one_plus_wu_hat = F.softplus(wu)  # 1 + w.u_hat, (B,)
        w_sq = (w * w).sum(-1).clamp_min(torch.finfo(w.dtype).tiny)
        self.u_hat = u + ((self.one_plus_wu_hat - 1 - wu) / w_sq).unsqueeze(-1) * w
        self.w, self.b = w, b

    def _log_det(self, t: Tensor) -> Tensor:
        t2 = t * t
        return torch.log(t2 + self.one_plus_wu_hat * (1 - t2))

    def forward_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:
        t = torch.tanh((x * self.w).sum(-1) + self.b)
        return x + self.u_hat * t.unsqueeze(-1), self._log_det(t)

    def inverse_and_log_det(self, y: Tensor) -> tuple[Tensor, Tensor]:
        # w.y + b = a + (w.u_hat) tanh(a) with a = w.x + b: one monotone equation in a.
        c = (self.w * self.u_hat).sum(-1)
        alpha = (y * self.w).sum(-1) + self.b
        a = solve_x_plus_tanh(alpha, c, torch.ones_like(c), 0 * c, self.one_plus_wu_hat)
        t = torch.tanh(a)
        return y - self.u_hat * t.unsqueeze(-1), self._log_det(t)


class RadialTransform(FlowTransform):
    """f(z) = z + beta * (z - z0) / (alpha + r), r = |z - z0|; z0 (B, D), alpha, beta (B,).

    ``alpha = softplus(raw) > 0`` and ``beta = -alpha + softplus(raw') >= -alpha``
    make the map invertible. log|det J| = (D - 1) log(1 + beta / (alpha + r))
    + log(1 + alpha beta / (alpha + r)^2). The inverse solves
    ``r' = r (1 + beta / (alpha + r))`` for ``r`` (a quadratic) in closed form.
    """

    def __init__(self, z0: Tensor, alpha: Tensor, beta: Tensor) -> None:
        super().__init__()
        self.z0, self.alpha, self.beta = z0, alpha, beta

    def _log_det(self, r: Tensor, d: int) -> Tensor:
        ar = self.alpha + r
        return (d - 1) * torch.log1p(self.beta / ar) + torch.log1p(self.alpha * self.beta / ar**2)

    def forward_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:
        diff = x - self.z0
        r = torch.linalg.vector_norm(diff, dim=-1)
        y = x + (self.beta / (self.alpha + r)).unsqueeze(-1) * diff
        return y, self._log_det(r, x.shape[-1])

    def inverse_and_log_det(self, y: Tensor) -> tuple[Tensor, Tensor]:
        diff = y - self.z0
        r_out = torch.linalg.vector_norm(diff, dim=-1)
        # r^2 + (alpha + beta - r') r - alpha r' = 0; its positive root, without cancellation.
        c = self.alpha + self.beta - r_out
        sq = torch.sqrt(c * c + 4 * self.alpha * r_out)
        pos = c >= 0
        r = torch.where(
            pos, 2 * self.alpha * r_out / torch.where(pos, c + sq, 1.0), 0.5 * (sq - c)
        )
        ar = self.alpha + r
        x = self.z0 + diff * (ar / (ar + self.beta)).unsqueeze(-1)
        return x, self._log_det(r, y.shape[-1])


@FAMILIES.register(
    "planar",
    "diagonal Gaussian followed by K amortized planar flows z + u tanh(w.z + b)",
    "Rezende & Mohamed 2015, Variational Inference with Normalizing Flows",
)
class PlanarFlow(FlowFamily):
    """K planar steps whose u, w, b (2D + 1 numbers per step) are a linear head of h.

    Option ``flow_steps`` (K, default 4).

    >>> fam = PlanarFlow(400, 20, flow_steps=2)
    >>> q = fam(torch.randn(3, 400))
    >>> z = q.rsample((5,))
    >>> z.shape, q.log_prob(z).shape
    (torch.Size([5, 3, 20]), torch.Size([5, 3]))
    """

    def __init__(self, feature_dim: int, latent_dim: int, *, flow_steps: int = 4) -> None:
        super().__init__(feature_dim, latent_dim, flow_steps)
        self.heads = nn.Linear(feature_dim, self.flow_steps * (2 * latent_dim + 1))

    def transforms(self, h: Tensor) -> list[PlanarTransform]:
        d = self.latent_dim
        params = self.heads(h).unflatten(-1, (self.flow_steps, 2 * d + 1))
        return [
            PlanarTransform(params[..., k, :d], params[..., k, d : 2 * d], params[..., k, 2 * d])
            for k in range(self.flow_steps)
        ]


@FAMILIES.register(
    "radial",
    "diagonal Gaussian followed by K amortized radial flows around points z0",
    "Rezende & Mohamed 2015, Variational Inference with Normalizing Flows",
)
class RadialFlow(FlowFamily):
    """K radial steps whose z0, alpha, beta (D + 2 numbers per step) are a linear head of h.

    Option ``flow_steps`` (K, default 4).

    >>> fam = RadialFlow(400, 20)
    >>> q = fam(torch.randn(3, 400))
    >>> q.log_prob(q.rsample()).shape
    torch.Size([3])
    """

    def __init__(self, feature_dim: int, latent_dim: int, *, flow_steps: int = 4) -> None:
        super().__init__(feature_dim, latent_dim, flow_steps)
        self.heads = nn.Linear(feature_dim, self.flow_steps * (latent_dim + 2))

    def transforms(self, h: Tensor) -> list[RadialTransform]:
        d = self.latent_dim
        params = self.heads(h).unflatten(-1, (self.flow_steps, d + 2))
        out = []
        for k in range(self.flow_steps):
            alpha = F.softplus(params[..., k, d])
            beta = -alpha + F.softplus(params[..., k, d + 1])
            out.append(RadialTransform(params[..., k, :d], alpha, beta))
        return out
