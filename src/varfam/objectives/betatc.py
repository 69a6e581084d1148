"""β-TCVAE: the KL split into index-code MI, total correlation and dimension-wise KL.

Ricky T. Q. Chen, Xuechen Li, Roger Grosse, David Duvenaud, "Isolating Sources of
Disentanglement in Variational Autoencoders", 2018. With the aggregate posterior
``q(z) = (1/N) Σ_n q(z|x_n)`` over the N training examples, the ELBO's KL term splits as

    E_x KL(q(z|x) || p(z)) = I_q(x; z)                      index-code MI
                           + KL(q(z) || Π_d q(z_d))         total correlation (TC)
                           + Σ_d KL(q(z_d) || p(z_d))       dimension-wise KL

and the loss weighs the three by α (option ``mi_weight``), β and γ. Per example, with
z ~ q(z|x) (one reparameterized sample) the three are ``log q(z|x) - log q(z)``,
``log q(z) - log Π_d q(z_d)`` and ``log Π_d q(z_d) - log p(z)``: they add up to
``log q(z|x) - log p(z)``, whose expectation is the KL. q(z) and its marginals are
estimated from the batch of M examples (Chen et al., section 3):

- ``"mws"``, minibatch-weighted sampling: ``log q(z_i) ≈ log Σ_j q(z_i|x_j) - log(N M)``;
- ``"mss"``, minibatch-stratified sampling: the same sum with the weights of the paper's
  appendix (1/N for the example's own term, (N - M + 1) / (N (M - 1)) for one other and
  1/(M - 1) for the rest), whose rows sum to one. The own term sits on the diagonal
  (z_i was drawn from q(z|x_i)); the authors' code strides the flat matrix so that it
  lands in column 0 instead (rtqichen/beta-tcvae pull request 1; disentangling-vae issue
  58). A batch of one example falls back to ``mws``.

N comes from the training loop (:meth:`~varfam.objectives.Objective.prepare`), or the
option ``data_size`` outside it.

**What it composes with.** Any family whose q(z|x) has one-dimensional marginals in
closed form: products of independent dimensions (``diagonal``, ``laplace``,
``student``, ``bernoulli``), Gaussians with a covariance (``full``, ``lowrank``) and
mixtures of products (``mixture``); flows, the hierarchical family, the sphere and the
relaxed categorical have none and are refused. Any prior: the third term is
``KL(Π_d q(z_d) || p(z))``, which is the dimension-wise KL of the paper when p(z)
factorizes (the standard and learned priors) and the same decomposition's last term
otherwise. Any likelihood. Under DDP each process estimates q(z) from its share of the
batch (M is the share).

With α = β = γ = 1 the loss is the ELBO's (with a Monte Carlo KL). The reported ``kl``
and ``elbo`` are the plain ones (:func:`kl_term`); the three estimates are available
from :meth:`BetaTC.decomposition`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor
from torch.distributions import (
    Distribution,
    Independent,
    LowRankMultivariateNormal,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
)

from varfam.errors import VarfamError
from varfam.objectives.base import Objective, kl_term, non_negative, probe_posterior
from varfam.objectives.terms import Terms
from varfam.parts import fp32
from varfam.registry import OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["BetaTC", "Decomposition", "marginal_log_prob", "ESTIMATES"]

#: The estimators of q(z) from a batch: minibatch-weighted and minibatch-stratified.
ESTIMATES = ("mss", "mws")


class Decomposition(NamedTuple):
    """The KL's three parts per example (B,), nats; they add up to log q(z|x) - log p(z)."""

    mutual_information: Tensor
    total_correlation: Tensor
    dimension_kl: Tensor


def marginal_log_prob(d: Distribution, z: Tensor) -> Tensor | None:
    """log q(z_k) of each dimension's one-dimensional marginal, shape ``z.shape`` (..., D).

    ``d`` has event (D,); ``z`` broadcasts against its batch shape. ``None`` where the
    marginals have no closed form here (flows, spheres, simplices).
    """
    if isinstance(d, Independent) and d.reinterpreted_batch_ndims == 1:
        return d.base_dist.log_prob(z)
    if isinstance(d, (MultivariateNormal, LowRankMultivariateNormal)):
        return Normal(d.mean, d.variance.sqrt()).log_prob(z)
    if isinstance(d, MixtureSameFamily):
        inner = marginal_log_prob(d.component_distribution, z.unsqueeze(-2))  # (..., K, D)
        if inner is None:
            return None
        log_w = torch.log_softmax(d.mixture_distribution.logits, -1).unsqueeze(-1)
        return torch.logsumexp(log_w + inner, dim=-2)
    return None


def no_marginals(owner: str, q: Distribution) -> VarfamError:
    return VarfamError(
        f"{owner} needs the one-dimensional marginals of q(z|x), which "
        f"{type(q).__name__} does not have in closed form; use a family such as diagonal, "
        "full, lowrank, laplace, student or mixture"
    )


def log_importance_weights(batch: int, data_size: int, estimate: str) -> Tensor:
    """log w (M, M): row i weighs q(z_i|x_j) in the estimate of q(z_i) (module doc)."""
    n, m = data_size, batch
    if estimate == "mws" or m < 2:
        return torch.full((m, m), -math.log(n * m))
    w = torch.full((m, m), 1.0 / (m - 1))
    idx = torch.arange(m)
    w[idx, idx] = 1.0 / n  # the example's own term
    w[idx, (idx + 1) % m] = (n - m + 1) / (n * (m - 1))  # one stratum stands for the rest
    return w.log()


@OBJECTIVES.register(
    "betatc",
    "beta-TCVAE: the KL split into index-code MI, total correlation and dimension-wise KL, "
    "weighted by mi_weight, beta (default 6), gamma; q(z) estimated by mss or mws (option "
    "estimate)",
    "Chen, Li, Grosse & Duvenaud 2018, Isolating Sources of Disentanglement in Variational "
    "Autoencoders",
)
class BetaTC(Objective):
    """Loss ``-mean_B(log p(x|z) - α MI - β TC - γ dimKL)`` (module doc).

    Options: ``mi_weight`` (the paper's α, default 1; ``alpha`` stays, as for every
    objective, the weight of a classifier's log q(y|x) in semi-supervised training),
    ``beta`` (default 6: the paper's β-TCVAE weighs the TC alone), ``gamma`` (default 1),
    ``estimate`` (``"mss"``, the default, or ``"mws"``) and ``data_size`` (N; the
    training loop sets it when left out).

    >>> BetaTC(beta=6, data_size=1000).estimate
    'mss'
    """

    def __init__(
        self,
        *,
        beta: float = 6.0,
        gamma: float = 1.0,
        mi_weight: float = 1.0,
        estimate: str = "mss",
        data_size: int | None = None,
        alpha: float | None = None,
        labelled_share: float | None = None,
    ) -> None:
        non_negative("betatc", mi_weight=mi_weight, beta=beta, gamma=gamma)
        if estimate not in ESTIMATES:
            raise VarfamError(
                f"betatc: option estimate must be {' or '.join(ESTIMATES)}, got {estimate!r}"
            )
        if data_size is not None and (isinstance(data_size, bool)
                                      or not isinstance(data_size, int) or data_size < 1):
            raise VarfamError(
                f"betatc: option data_size must be a positive integer, got {data_size!r}"
            )
        self._labelled_options("betatc", alpha, labelled_share)
        self.mi_weight, self.beta, self.gamma = float(mi_weight), float(beta), float(gamma)
        self.estimate = estimate
        self.data_size = data_size

    def prepare(self, model: VAE, *, data_size: int, batch_size: int) -> None:
        """Record N and refuse a family without marginals before training starts."""
        if self.data_size is None:
            super().prepare(model, data_size=data_size, batch_size=batch_size)
        q = probe_posterior(model)
        if q is not None and marginal_log_prob(q, q.sample().unsqueeze(-2)) is None:
            raise no_marginals("betatc", q)

    def decomposition(self, q: Distribution, p: Distribution, z: Tensor) -> Decomposition:
        """MI, TC and dimension-wise KL per example, ``z.shape[:-1]``, for z (..., B, D) ~ q.

        ``q`` is the batch's q(z|x) (batch (B,)); leading sample dimensions of ``z`` are
        independent draws, each estimated from its own batch of B latents.
        """
        if self.data_size is None:
            raise VarfamError(
                "betatc needs the number of training examples N: train it with varfam.train "
                "(which sets it) or give the option data_size"
            )
        with fp32(z.device.type):
            pairs = marginal_log_prob(q, z.unsqueeze(-2))  # (..., B, B, D): log q(z_i,d | x_j)
            if pairs is None:
                raise no_marginals("betatc", q)
            log_w = log_importance_weights(z.shape[-2], self.data_size, self.estimate).to(z)
            if isinstance(q, Independent):  # a product: the joint is the sum of marginals
                joint_pairs = pairs.sum(-1)
            else:
                joint_pairs = q.log_prob(z.unsqueeze(-2))  # (..., B, B)
            log_qz = torch.logsumexp(log_w + joint_pairs, dim=-1)
            log_prod = torch.logsumexp(log_w.unsqueeze(-1) + pairs, dim=-2).sum(-1)
            log_qzx = q.log_prob(z)
            log_pz = p.log_prob(z)
        return Decomposition(log_qzx - log_qz, log_qz - log_prod, log_prod - log_pz)

    def terms(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> Terms:
        y = model.labels_of(x, y)
        q = model.encode(x, y)
        z = q.rsample()
        recon = model.decode(z, y).log_prob(x)
        p = model.prior_distribution(y)
        mi, tc, dim_kl = self.decomposition(q, p, z)
        kl = kl_term(q, p, z)
        penalty = self.mi_weight * mi + self.beta * tc + self.gamma * dim_kl
        return Terms(recon - penalty, recon - kl, recon, kl)
