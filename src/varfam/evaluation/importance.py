"""Importance weights: draws of q(z|x) weighed by the model, in blocks that fit in memory.

For rows x and draws ``z_k ~ q(z|x)`` (q(z|x, y) for a model conditioned on labels),

    log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),

the one computation behind every estimate that weighs draws of q: the
importance-sampled log-likelihood ``logsumexp_k log w_k - log K``
(:func:`varfam.evaluation.bounds.importance_sampling`) and MIWAE's self-normalized
conditional expectations of tables (:mod:`varfam.tables.imputation`).

Draws are taken one at a time for all the given rows at once, so the numbers do not
depend on how many are decoded together; the decoder runs on blocks of ``(samples,
rows)`` latents sized by :func:`block_sizes`, the one memory rule.

Precision: everything runs in fp32 unless ``precision="bf16"`` is asked for; then the
decoder's networks (not the encoder, not q or p(z), not the log-density of x) run under
bf16 autocast. The draws are then the same as in fp32 (the encoder is), and only
log p(x|z) moves; ``benchmarks/loglik_precision.py`` measures by how much.

>>> import torch, varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,)).eval()
>>> x = torch.rand(3, 1, 8, 8).round()
>>> rows, samples = block_sizes(model, 3, 10, memory_mb=8.0)
>>> [tuple(d.log_w.shape) for d in weighed_draws(model, x, 10, rows=rows, samples=4)]
[(4, 3), (4, 3), (2, 3)]
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.distributions import Distribution

from varfam.errors import VarfamError
from varfam.parts.precision import autocast

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["block_sizes", "weighed_draws", "WeighedDraws", "PRECISIONS", "check_precision"]

#: the precisions an importance-sampled estimate can decode in (fp32 is the default)
PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a one-line :class:`VarfamError`."""
    if precision not in PRECISIONS:
        raise VarfamError(f"the decoding precision of importance sampling must be one of "
                          f"{', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def block_sizes(model: VAE, n: int, k: int, memory_mb: float, *, rows: int | None = None,
                samples: int | None = None) -> tuple[int, int]:
    """(rows, samples) per decoder call for ``k`` draws of ``n`` rows, so that the
    decoder's output, ``4 · params_per_value · prod(data_shape)`` bytes per latent,
    stays within ``memory_mb``.

    The rows come first (all ``n`` where they fit), the draws fill what is left;
    ``rows`` or ``samples`` fix one of the two (``samples=k``: every draw of a row in
    one call, as self-normalized weights need).
    """
    per_latent = 4 * getattr(model.likelihood, "params_per_value", 1) * math.prod(model.data_shape)
    budget = max(1, int(memory_mb * 2**20) // max(per_latent, 1))  # latents per call
    if rows is None and samples is not None:
        rows = max(1, budget // samples)
    b = max(1, min(n, rows or budget))
    return b, max(1, min(k, samples or budget // b))


@dataclass
class WeighedDraws:
    """``m`` draws for every row: ``z`` (m, N, D), ``log_w`` (m, N) float64 nats, and
    ``decoded``, p(x|z) of the m·N latents (sample-major), where it was asked for."""

    z: Tensor
    log_w: Tensor
    decoded: Distribution | None = None


def weighed_draws(model: VAE, x: Tensor, k: int, *, rows: int, samples: int,
                  y: Tensor | None = None, decoded: bool = False,
                  precision: str = "fp32") -> Iterator[WeighedDraws]:
    """``k`` draws of q(z|x) per row of ``x`` (N, *data_shape), weighed, ``samples`` at a time.

    ``x`` is on the model's device; the decoder reads ``rows`` rows at a time (see
    :func:`block_sizes`). ``y`` (N,): the labels of a model conditioned on labels (then
    ``q(z|x, y)`` and ``p(x|z, y) p(z|y)``). ``decoded``: also return p(x|z), which needs
    every row in one block (``rows >= N``). ``precision="bf16"`` decodes under bf16
    autocast (see the module's text). Call it in eval mode, under no_grad or
    inference_mode.
    """
    bf16 = check_precision(precision) == "bf16"
    n = x.shape[0]
    if decoded and rows < n:
        raise ValueError(f"decoded=True needs all {n} rows in one block, got rows={rows}")
    y = model.labels(y, n) if y is not None else None
    p = model.prior_distribution(y)
    q = model.encode(x, y)  # batch (N,)
    # what the likelihood computes from x alone, once per block rather than per sample
    observed = [model.observe(x[i : i + rows]) for i in range(0, n, rows)]
    done = 0
    while done < k:
        m = min(samples, k - done)
        zs, lws = [], []
        for _ in range(m):
            z = q.sample()  # (N, D); log_prob on this very tensor lets flows reuse caches
            lws.append(p.log_prob(z) - q.log_prob(z))
            zs.append(z)
        z = torch.stack(zs)  # (m, N, D)
        log_w = torch.stack(lws).float()  # (m, N)
        px = None
        for j, i in enumerate(range(0, n, rows)):
            with autocast(x.device, bf16):  # the decoder's networks; densities stay fp32
                ll, px = model.decoded_log_likelihood(
                    x[i : i + rows], z[:, i : i + rows], observed[j],
                    None if y is None else y[i : i + rows],
                )
            log_w[:, i : i + rows] += ll
        yield WeighedDraws(z, log_w.double(), px if decoded else None)
        done += m
