"""Grid quadrature in two dimensions, shared by the tests that check a density's mass.

A density is checked by summing it over the cells of a product grid of midpoints:
``sum_i exp(log p(x_i)) * w_i`` with ``w_i`` the cell volume (times the Jacobian
of a change of variables where the axes live in another space, e.g. logits for
densities on the unit square). The same weights give the density's moments, to be
compared with its samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

DT = torch.float64


def midpoints(lo: float, hi: float, n: int) -> Tensor:
    """The centres of ``n`` equal cells of [lo, hi], float64."""
    edges = torch.linspace(float(lo), float(hi), n + 1, dtype=DT)
    return 0.5 * (edges[1:] + edges[:-1])


def sample_box(samples: Tensor, n: int, widen: float = 1.5, q: float = 5e-4) -> list[Tensor]:
    """Midpoint axes (one per dimension, ``n`` cells each) of the box centred on the
    ``q``..``1 - q`` quantile range of ``samples`` (S, d), ``widen`` times as wide on
    each side (1.5: three times the range in all)."""
    samples = samples.double()
    lo, hi = torch.quantile(samples, q, dim=0), torch.quantile(samples, 1 - q, dim=0)
    mid, half = (lo + hi) / 2, widen * (hi - lo)
    return [midpoints(float(m - h), float(m + h), n) for m, h in zip(mid, half)]


def logit_axis(n: int, half_width: float = 40.0) -> tuple[Tensor, Tensor]:
    """Midpoints s in logit space and log dx/ds = log σ(s) + log σ(-s) of x = σ(s)."""
    s = midpoints(-half_width, half_width, n)
    return s, torch.nn.functional.logsigmoid(s) + torch.nn.functional.logsigmoid(-s)


def grid(axes: list[Tensor], log_jac: list[Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """The product grid of ``axes``: points (N, d) and log weights (N,) = log cell volume
    (+ the log-Jacobians ``log_jac``, one per axis)."""
    points = torch.cartesian_prod(*axes).reshape(-1, len(axes))
    log_w = torch.full((points.shape[0],), math.log(math.prod(float(a[1] - a[0]) for a in axes)),
                       dtype=DT)
    if log_jac is not None:
        log_w = log_w + torch.cartesian_prod(*log_jac).reshape(-1, len(axes)).sum(-1)
    return points, log_w


def weights(log_density: Callable[[Tensor], Tensor], points: Tensor, log_w: Tensor,
            chunk: int = 1_000_000) -> Tensor:
    """``exp(log_density(points) + log_w)``, float64: each cell's probability mass, (N,)
    or (N, *batch) when ``log_density`` returns a batch of densities per point."""
    out = []
    with torch.no_grad():
        for start in range(0, points.shape[0], chunk):
            lp = log_density(points[start : start + chunk]).double()
            w = log_w[start : start + chunk]
            out.append(torch.exp(lp + w.view(-1, *[1] * (lp.dim() - 1))))
    return torch.cat(out)


def mass(log_density: Callable[[Tensor], Tensor], axes: list[Tensor],
         log_jac: list[Tensor] | None = None) -> float:
    """The total mass of ``log_density`` over the grid of ``axes``."""
    return float(weights(log_density, *grid(axes, log_jac)).sum())


def moments(w: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (d,) and covariance (d, d) of the grid distribution with cell masses ``w``."""
    w = w / w.sum()
    mean = (w[:, None] * points).sum(0)
    centred = points - mean
    return mean, (w[:, None] * centred).T @ centred
