"""Training objectives: functions of the model's parts, not model subclasses.

An objective is called as ``objective(model, x, epoch=e)`` (and ``y=labels`` for a
model conditioned on labels) and returns an :class:`ObjectiveResult` whose ``loss``
is minimised (a scalar, mean over the batch) and whose per-example terms ``elbo``,
``reconstruction`` and ``kl`` are (B,) tensors in nats.

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
from torch import Tensor
from torch.distributions import Distribution, Independent, kl_divergence

from .errors import VarfamError
from .families.base import log_prob_module, stop_gradient_log_prob
from .precision import fp32
from .registry import OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover
    from .model import VAE

__all__ = [
    "ObjectiveResult",
    "Objective",
    "Terms",
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
    lead = z.shape[:-1]
    return kl if kl.shape == lead else kl.expand(lead)


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


@dataclass
class ObjectiveResult:
    """What an objective returns. ``loss`` is a scalar; the rest are (B,) tensors in nats."""

    loss: Tensor
    elbo: Tensor
    reconstruction: Tensor
    kl: Tensor


@dataclass
class Terms:
    """An objective's per-example terms for a batch, each (B,) in nats.

    ``surrogate`` is what the loss maximizes (the loss is its negated batch mean) and
    carries the gradients; ``elbo``, ``reconstruction`` and ``kl`` are reported.
    ``negated``, where an objective has it without a negation, is ``-surrogate`` (the
    same values): the loss is then its batch mean, one autograd node fewer.
    """

    surrogate: Tensor
    elbo: Tensor
    reconstruction: Tensor
    kl: Tensor
    negated: Tensor | None = None


class Objective:
    """Base class: ``objective(model, x, epoch=..., y=None)`` → :class:`ObjectiveResult`.

    Subclasses implement :meth:`terms`, the per-example bound for ``x`` (and labels
    ``y`` of a model conditioned on labels). ``epoch`` is fractional (``epoch + i / n``
    at batch i of n). A compiled training step (``TrainConfig.compile``) passes it as
    a 0-d float64 tensor, so that a new value does not recompile the step: use it in
    arithmetic, not in Python branches.

    With labels ``y`` (B,) int64 (``-1`` where hidden) the bound is conditioned on y
    where it is known and sums y out exactly where it is hidden, and a model with a
    classifier adds ``alpha · log q(y|x)`` for labelled rows
    (:func:`varfam.semisupervised.labelled_objective`, the M2 objective of Kingma et al.
    2014). ``alpha`` and ``labelled_share`` (N_labelled / N of the training data) are
    options of every objective; the training loop sets them from the data.
    """

    alpha: float | None = None
    labelled_share: float | None = None

    def _labelled_options(self, owner: str, alpha: float | None,
                          labelled_share: float | None) -> None:
        if alpha is not None:
            _non_negative(owner, alpha=alpha)
        if labelled_share is not None and not (
            isinstance(labelled_share, (int, float)) and 0 < labelled_share <= 1
        ):
            raise VarfamError(
                f"{owner}: option labelled_share must be in (0, 1], got {labelled_share!r}"
            )
        self.alpha = None if alpha is None else float(alpha)
        self.labelled_share = None if labelled_share is None else float(labelled_share)

    def terms(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> Terms:
        raise NotImplementedError  # pragma: no cover

    def __call__(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> ObjectiveResult:
        if y is not None and model.uses_labels and model.condition.classifier is not None:
            from .semisupervised import labelled_objective

            return ObjectiveResult(*labelled_objective(
                self, model, x, y, epoch, alpha=self.alpha, labelled_share=self.labelled_share))
        t = self.terms(model, x, epoch, y if model.uses_labels else None)
        loss = -t.surrogate.mean() if t.negated is None else t.negated.mean()
        return ObjectiveResult(loss, t.elbo, t.reconstruction, t.kl)


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
        self,
        *,
        beta: float = 1.0,
        warmup_epochs: float = 0.0,
        free_bits: float = 0.0,
        alpha: float | None = None,
        labelled_share: float | None = None,
    ) -> None:
        _non_negative("elbo", beta=beta, warmup_epochs=warmup_epochs, free_bits=free_bits)
        self._labelled_options("elbo", alpha, labelled_share)
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

    def terms(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> Terms:
        y = model.labels_of(x, y)
        q = model.encode(x, y)
        z = q.rsample()
        recon = model.decode(z, y).log_prob(x)
        p = model.prior_distribution(y)
        kl = kl_term(q, p, z)
        kl_for_loss = kl
        if self.free_bits > 0:
            per_dim = kl_per_dimension(q, p)
            if per_dim is not None:
                kl_for_loss = per_dim.mean(0).clamp_min(self.free_bits).sum().expand_as(kl)
            else:  # a non-factorized q: the floor applies to the total KL
                kl_for_loss = kl.mean().clamp_min(self.free_bits * z.shape[-1]).expand_as(kl)
        elbo = recon - kl
        weight = self.kl_weight(epoch)
        if isinstance(weight, float) and weight == 1.0 and kl_for_loss is kl:
            # the plain ELBO: no ops spent on a weight of 1; kl - recon is -(recon - kl)
            # exactly (IEEE rounding is symmetric), so the loss is the same to the bit
            return Terms(elbo, elbo, recon, kl, negated=kl - recon)
        return Terms(recon - weight * kl_for_loss, elbo, recon, kl)


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

    def __init__(
        self,
        *,
        k: int = 5,
        estimator: str = "plain",
        alpha: float | None = None,
        labelled_share: float | None = None,
    ) -> None:
        self._labelled_options("iwae", alpha, labelled_share)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise VarfamError(f"iwae: option k must be a positive integer, got {k!r}")
        if estimator not in ESTIMATORS:
            raise VarfamError(
                f"iwae: option estimator must be one of {', '.join(ESTIMATORS)}, "
                f"got {estimator!r}"
            )
        self.k = k
        self.estimator = estimator

    def log_weights(
        self, model: VAE, x: Tensor, y: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(log w (k, B), z (k, B, D), KL (B,), log p(x|z) (k, B)) with this estimator's log q.

        ``y``: the labels (B,) of a model conditioned on labels (q(z|x, y), p(z|y), p(x|z, y)).
        """
        y = model.labels_of(x, y)
        h = model.features(x, y)
        with fp32(h.device.type):
            q = model.family(h)
            z = q.rsample((self.k,))
            if self.estimator == "plain":
                log_q = q.log_prob(z)
            else:
                log_q = stop_gradient_log_prob(model.family, h, z)
            p = model.prior_distribution(y)
            log_pz = p.log_prob(z)
        log_px = model.log_likelihood(x, z, y=y)
        with torch.no_grad():
            kl = kl_term(q, p, z, log_q=log_q, log_p=log_pz).mean(0)
        return log_px + log_pz - log_q, z, kl, log_px

    def terms(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> Terms:
        log_w, z, kl, log_px = self.log_weights(model, x, y)
        bound = torch.logsumexp(log_w, dim=0) - math.log(self.k)  # (B,)
        if self.estimator == "dreg":
            w = torch.softmax(log_w.detach(), dim=0)  # normalized weights (k, B)
            if z.requires_grad:
                z.register_hook(lambda grad: grad * w.unsqueeze(-1).to(grad.dtype))
            surrogate = (w * log_w).sum(0)
            objective = bound.detach() + surrogate - surrogate.detach()
        else:
            objective = bound
        return Terms(objective, bound.detach(), log_px.detach().mean(0), kl)
