"""Training objectives: functions of the model's parts, not model subclasses.

An objective is called as ``objective(model, x, epoch=e)`` and returns an
:class:`ObjectiveResult` whose ``loss`` is minimised (a scalar, mean over the
batch) and whose per-example terms ``elbo``, ``reconstruction`` and ``kl`` are
(B,) tensors in nats.

The choice between an analytic KL and a Monte Carlo estimate is made in one
place, :func:`kl_term`, and every objective and evaluation uses it.

Built in: ``elbo`` (β, KL warm-up, free bits) and ``iwae`` (k importance samples,
with the plain, STL or DReG gradient estimator for the inference network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, kl_divergence
from torch.func import functional_call

from .errors import VarfamError
from .precision import fp32
from .registry import OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover
    from .model import VAE

__all__ = [
    "ObjectiveResult",
    "Objective",
    "Elbo",
    "Iwae",
    "kl_term",
    "kl_per_dimension",
    "stop_gradient_log_prob",
    "log_prob_module",
    "ESTIMATORS",
]

ESTIMATORS = ("plain", "stl", "dreg")


def kl_term(
    q: Distribution,
    p: Distribution,
    z: Tensor,
    log_q: Tensor | None = None,
    log_p: Tensor | None = None,
) -> Tensor:
    """KL(q || p) per example, shape ``z.shape[:-1]``, in nats.

    Uses the closed form registered with ``torch.distributions.kl`` where one
    exists; otherwise the Monte Carlo estimate ``log q(z) - log p(z)`` on the same
    ``z`` that feeds the decoder (one estimate per sample when ``z`` has sample
    dimensions). ``log_q``/``log_p``, when given, are those log-densities already
    evaluated at ``z`` and are used instead of evaluating them again.
    """
    try:
        kl = kl_divergence(q, p)
    except NotImplementedError:
        lq = q.log_prob(z) if log_q is None else log_q
        lp = p.log_prob(z) if log_p is None else log_p
        return lq - lp
    return kl.expand(z.shape[:-1])


def kl_per_dimension(q: Distribution, p: Distribution) -> Tensor | None:
    """Closed-form KL per latent dimension, shape (B, D), when q and p factorize.

    Returns ``None`` when either is not a product of independent dimensions with
    a registered KL (then only the total KL is defined).
    """
    if not (isinstance(q, Independent) and isinstance(p, Independent)):
        return None
    if q.reinterpreted_batch_ndims != 1 or p.reinterpreted_batch_ndims != 1:
        return None
    try:
        return kl_divergence(q.base_dist, p.base_dist)
    except NotImplementedError:
        return None


class _LogProbAt(nn.Module):
    """``family(h).log_prob(z)`` as one module call (see :func:`stop_gradient_log_prob`)."""

    def __init__(self, family: nn.Module) -> None:
        super().__init__()
        self.family = family

    def forward(self, h: Tensor, z: Tensor) -> Tensor:
        return self.family(h).log_prob(z)


def stop_gradient_log_prob(family: nn.Module, h: Tensor, z: Tensor) -> Tensor:
    """log q(z|x) with every parameter of ``family`` and the features ``h`` detached.

    The value is ``family(h).log_prob(z)``, shape ``z.shape[:-1]``, in nats, but the
    gradient reaches only ``z``, not the inference network's parameters: the
    "stop-gradient" density of STL and DReG. Works for any family through
    ``torch.func.functional_call``. The parameters are swapped for the detached ones
    during the whole of building q *and* scoring z, because families whose
    distribution calls a network lazily (IAF, Real NVP, the hierarchical family) read
    their parameters inside ``log_prob``, after ``forward`` has returned.
    """
    params = {f"family.{name}": p.detach() for name, p in family.named_parameters()}
    return functional_call(log_prob_module(family), params, (h.detach(), z))


def log_prob_module(family: nn.Module) -> nn.Module:
    """The module computing ``family(h).log_prob(z)``, made once per family and kept on it.

    :class:`~varfam.families.base.Family` makes it when it is built, so a compiled
    training step never creates a module (which would break its graph). It is kept
    outside the module tree: not a submodule, not in ``state_dict``.
    """
    wrapper = family.__dict__.get("_log_prob_at")
    if wrapper is None:
        wrapper = _LogProbAt(family)
        object.__setattr__(family, "_log_prob_at", wrapper)
    return wrapper


@dataclass
class ObjectiveResult:
    """What an objective returns. ``loss`` is a scalar; the rest are (B,) tensors in nats."""

    loss: Tensor
    elbo: Tensor
    reconstruction: Tensor
    kl: Tensor


class Objective:
    """Base class: ``objective(model, x, epoch=...)`` → :class:`ObjectiveResult`.

    ``epoch`` is fractional (``epoch + i / n`` at batch i of n). A compiled training
    step (``TrainConfig.compile``) passes it as a 0-d float64 tensor, so that a new
    value does not recompile the step: use it in arithmetic, not in Python branches.
    """

    def __call__(self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0) -> ObjectiveResult:
        raise NotImplementedError  # pragma: no cover


def _non_negative(owner: str, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise VarfamError(
                f"{owner}: option {name} must be a non-negative number, got {value!r}"
            )


@OBJECTIVES.register(
    "elbo",
    "evidence lower bound with beta, KL warm-up and free bits",
    "Kingma & Welling 2014, Auto-Encoding Variational Bayes; Higgins et al. 2017, beta-VAE; "
    "Bowman et al. 2016 (KL warm-up); Kingma et al. 2016, Improved Variational Inference "
    "with Inverse Autoregressive Flow (free bits)",
)
class Elbo(Objective):
    """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)), one reparameterized sample.

    The loss is ``-mean_B(log p(x|z) - w(epoch) · KL')`` where

    - ``w(epoch) = beta · min(1, epoch / warmup_epochs)`` (``beta`` when
      ``warmup_epochs`` is 0): β weights the KL (Higgins et al. 2017); warm-up
      ramps the weight linearly from 0 (Bowman et al. 2016; Sønderby et al. 2016).
      ``epoch`` is fractional (the training loop passes ``epoch + i / n``).
    - ``KL'`` is the KL with free bits (Kingma et al. 2016): with ``free_bits = λ``
      nats per dimension, the batch-mean KL of each latent dimension is replaced
      by ``max(λ, mean_B KL_d)``, so a dimension below the floor receives no KL
      gradient. Where q and p do not factorize (no closed-form per-dimension KL),
      the floor ``λ·D`` applies to the batch-mean total KL instead.

    The reported ``elbo`` (and ``kl``) is always the plain, unweighted bound, with
    the KL from :func:`kl_term` (closed form where registered).
    """

    def __init__(
        self, *, beta: float = 1.0, warmup_epochs: float = 0.0, free_bits: float = 0.0
    ) -> None:
        _non_negative("elbo", beta=beta, warmup_epochs=warmup_epochs, free_bits=free_bits)
        self.beta = float(beta)
        self.warmup_epochs = float(warmup_epochs)
        self.free_bits = float(free_bits)

    def kl_weight(self, epoch: float | Tensor) -> float | Tensor:
        """The KL weight ``w(epoch)`` of the loss (a 0-d tensor for a 0-d tensor ``epoch``)."""
        if self.warmup_epochs <= 0:
            return self.beta
        ramp = epoch / self.warmup_epochs
        if isinstance(ramp, Tensor):  # a compiled training step passes the epoch as a tensor
            return self.beta * ramp.clamp(0.0, 1.0)
        return self.beta * min(1.0, max(0.0, ramp))

    def __call__(self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0) -> ObjectiveResult:
        q = model.encode(x)
        z = q.rsample()
        recon = model.decode(z).log_prob(x)
        p = model.prior_distribution()
        kl = kl_term(q, p, z)
        kl_for_loss = kl
        if self.free_bits > 0:
            per_dim = kl_per_dimension(q, p)
            if per_dim is not None:
                kl_for_loss = per_dim.mean(0).clamp_min(self.free_bits).sum().expand_as(kl)
            else:  # a non-factorized q: the floor applies to the total KL
                kl_for_loss = kl.mean().clamp_min(self.free_bits * z.shape[-1]).expand_as(kl)
        loss = -(recon - self.kl_weight(epoch) * kl_for_loss).mean()
        return ObjectiveResult(loss, recon - kl, recon, kl)


@OBJECTIVES.register(
    "iwae",
    "importance-weighted bound with k samples (option k, default 5) and gradient estimator "
    "plain|stl|dreg (option estimator)",
    "Burda, Grosse & Salakhutdinov 2016, Importance Weighted Autoencoders; Roeder, Wu & "
    "Duvenaud 2017, Sticking the Landing; Tucker, Lawson, Gu & Maddison 2018, Doubly "
    "Reparameterized Gradient Estimators for Monte Carlo Objectives",
)
class Iwae(Objective):
    """The k-sample importance-weighted bound (Burda et al. 2016), per example

        L_k = log (1/k) Σ_i w_i,   log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x),

    with ``z_1..z_k ~ q(z|x)`` reparameterized, shape (k, B, D); the decoder sees all
    k·B latents at once (``model.log_likelihood``). ``L_1`` is the ELBO and
    ``L_k`` rises towards ``log p(x)`` with k. The loss is ``-mean_B L_k`` for every
    estimator; they differ only in the gradient reaching the inference network
    (encoder and family), with ``w̃_i = w_i / Σ_j w_j``:

    - ``"plain"``: the gradient of L_k itself, Σ_i w̃_i ∇ log w_i, including the
      score term ∇_φ log q(z_i|x) whose variance grows as the posterior is fitted.
    - ``"stl"`` (sticking the landing, Roeder et al. 2017): ``log q`` is evaluated
      with stop-gradient parameters (:func:`stop_gradient_log_prob`), so only
      the path through z remains. Unbiased for k = 1 (where it has zero variance
      at the exact posterior); for k > 1 it is biased (Tucker et al. 2018),
      which DReG corrects.
    - ``"dreg"`` (doubly reparameterized, Tucker et al. 2018): the inference
      network receives Σ_i w̃_i² ∂ log w_i/∂z_i · ∂z_i/∂φ (stop-gradient q), an
      unbiased estimator of ∇_φ L_k with lower variance. Implemented by the
      surrogate ``Σ_i sg(w̃_i) log w_i`` plus a hook that multiplies the gradient
      arriving at ``z_i`` by ``w̃_i``; the decoder and the prior get exactly the
      plain IWAE gradient Σ_i w̃_i ∇_θ log w_i (a prior that depends on the
      encoder, the VampPrior, gets that direct gradient too).

    Reported: ``elbo`` = L_k; ``reconstruction`` = mean_i log p(x|z_i); ``kl`` =
    :func:`kl_term` averaged over the k samples (so ``reconstruction - kl`` is the
    single-sample ELBO estimate, ≤ L_k on average). All are detached.
    """

    def __init__(self, *, k: int = 5, estimator: str = "plain") -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise VarfamError(f"iwae: option k must be a positive integer, got {k!r}")
        if estimator not in ESTIMATORS:
            raise VarfamError(
                f"iwae: option estimator must be one of {', '.join(ESTIMATORS)}, "
                f"got {estimator!r}"
            )
        self.k = k
        self.estimator = estimator

    def log_weights(self, model: VAE, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(log w (k, B), z (k, B, D), KL (B,), log p(x|z) (k, B)) with this estimator's log q."""
        h = model.encoder(x)
        with fp32(h.device.type):
            h = h if h.dtype == torch.float64 else h.float()
            q = model.family(h)
            z = q.rsample((self.k,))
            if self.estimator == "plain":
                log_q = q.log_prob(z)
            else:
                log_q = stop_gradient_log_prob(model.family, h, z)
            p = model.prior_distribution()
            log_pz = p.log_prob(z)
        log_px = model.log_likelihood(x, z)
        with torch.no_grad():
            kl = kl_term(q, p, z, log_q=log_q, log_p=log_pz).mean(0)
        return log_px + log_pz - log_q, z, kl, log_px

    def __call__(self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0) -> ObjectiveResult:
        log_w, z, kl, log_px = self.log_weights(model, x)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.k)  # (B,)
        if self.estimator == "dreg":
            w = torch.softmax(log_w.detach(), dim=0)  # normalized weights (k, B)
            if z.requires_grad:
                z.register_hook(lambda grad: grad * w.unsqueeze(-1).to(grad.dtype))
            surrogate = (w * log_w).sum(0)
            loss = -(bound.detach() + surrogate - surrogate.detach()).mean()
        else:
            loss = -bound.mean()
        return ObjectiveResult(loss, bound.detach(), log_px.detach().mean(0), kl)
