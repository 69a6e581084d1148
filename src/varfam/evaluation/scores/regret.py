"""``regret``: Likelihood Regret, after Xiao, Yan & Amit 2020.

``regret(x) = ELBO(x; q*_x) - ELBO(x; q_x)``: how much the ELBO of one input improves
when the encoder is fine-tuned on that input alone, with the decoder fixed. A model
whose amortized encoder already gives an in-distribution input a near-optimal
posterior gains little; an out-of-distribution input, which the encoder was never
trained on, gains more (Xiao, Yan & Amit 2020, "Likelihood Regret: An
Out-of-Distribution Detection Score For Variational Auto-encoder"). Always in nats,
never negative in expectation.

**What is fine-tuned, batched.** q(z|x) is the family applied to the encoder's
features, ``q = family(h(x))``; fine-tuning the encoder on one input can only change
that one input's ``h``. Here every row gets its own copy of its features ``h_i``
(N, F) — per-row parameters — optimized with Adam for ``steps`` steps (default 50,
learning rate ``lr``) on that row's single-sample negative ELBO, for all rows at once:
the rows' losses are independent, so the gradient of their sum is each row's own
gradient, and Adam's per-coordinate updates keep rows apart. No Python loop runs per
input. For the diagonal family (F ≥ 2D features into linear heads of full rank) every
``(loc, log-variance)`` is reachable, so the optimum is the best q(z|x) in the family,
the same as fine-tuning per-row copies of the heads reaches, at 1/(2D) of the memory;
for flows the flow's networks stay shared. Both ELBOs are estimated with the same
``samples`` draws (common random numbers) and the analytic KL where one is registered.

>>> import torch, varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> r = LikelihoodRegret(steps=5)(model, torch.rand(3, 1, 8, 8).round())
>>> r.shape
torch.Size([3])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.distributions import Distribution

from varfam.errors import VarfamError
from varfam.evaluation.scores.base import Score, check_positive, rows_per_block
from varfam.objectives import kl_term
from varfam.parts import fp32
from varfam.registry import SCORES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["LikelihoodRegret", "likelihood_regret"]


def _elbo(model: VAE, h: Tensor, x: Tensor, p: Distribution, draws: int) -> Tensor:
    """ELBO per row (B,) of ``x`` with q = family(h), averaged over ``draws`` draws of z."""
    with fp32(x.device.type):
        q = model.family(h)
        z = q.rsample((draws,))  # (draws, B, D)
        recon = model.log_likelihood(x, z)  # (draws, B)
        return (recon - kl_term(q, p, z)).mean(0)


def _block_regret(model: VAE, x: Tensor, steps: int, lr: float, samples: int, draws: int,
                  seed: int) -> Tensor:
    p = model.prior_distribution()
    with torch.no_grad():
        h0 = model.features(x).detach()
        with model.evaluating(seed):
            before = _elbo(model, h0, x, p, samples)
    h = h0.clone().requires_grad_(True)
    opt = torch.optim.Adam([h], lr=lr)
    for _ in range(steps):
        loss = -_elbo(model, h, x, p, draws).sum()  # rows independent: each its own gradient
        (grad,) = torch.autograd.grad(loss, [h])
        h.grad = grad
        opt.step()
    with torch.no_grad(), model.evaluating(seed):
        after = _elbo(model, h.detach(), x, p, samples)
    # the best encoding is at least as good as the start: a step that lost ELBO gains 0
    return (after - before).clamp_min(0).double().cpu()


def likelihood_regret(model: VAE, x: Tensor, *, steps: int = 100, lr: float = 0.01,
                      draws: int = 1, samples: int = 16, memory_mb: float = 64.0,
                      seed: int = 0) -> Tensor:
    """Likelihood Regret of each row of ``x`` (N, *data_shape): (N,) float64 nats.

    Rows are processed in blocks whose decoder output fits ``memory_mb``; the draws of
    each block are seeded by ``seed`` and the block's position. See the module doc.
    """
    if model.uses_labels:
        raise VarfamError("score 'regret' does not handle a model conditioned on labels")
    b = rows_per_block(model, max(samples, 4), memory_mb)
    device = model.device
    out = []
    for j, i in enumerate(range(0, x.shape[0], b)):
        xb = x[i : i + b].to(device, torch.float32)
        out.append(_block_regret(model, xb, steps, lr, samples, draws, seed * 1_000_003 + j))
    return torch.cat(out)


@SCORES.register(
    "regret",
    "Likelihood Regret: the ELBO gain when each input's encoding is fine-tuned on it alone, "
    "batched (options steps, lr, samples)",
    "Xiao, Yan & Amit 2020, Likelihood Regret: An Out-of-Distribution Detection Score For "
    "Variational Auto-encoder",
)
@dataclass(kw_only=True)
class LikelihoodRegret(Score):
    """ELBO after minus before per-row fine-tuning, nats (see the module doc)."""

    steps: int = 100
    lr: float = 0.01
    draws: int = 1
    samples: int = 16
    memory_mb: float = 64.0
    name = "regret"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.samples, "score option samples")
        check_positive(self.draws, "score option draws")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise VarfamError(f"score option steps must be a whole number >= 0, got {self.steps!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise VarfamError(f"score option lr must be positive, got {self.lr!r}")

    def compute(self, model: VAE, x: Tensor, y: Tensor | None) -> Tensor:
        return likelihood_regret(model, x, steps=self.steps, lr=self.lr, draws=self.draws,
                                 samples=self.samples, memory_mb=self.memory_mb, seed=self.seed)
