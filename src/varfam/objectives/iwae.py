"""The importance-weighted bound, with the plain, STL and DReG gradient estimators."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from varfam.errors import VarfamError
from varfam.families.base import stop_gradient_log_prob
from varfam.objectives.base import ESTIMATORS, Objective, kl_term
from varfam.objectives.terms import Terms
from varfam.parts import fp32
from varfam.registry import OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["Iwae"]


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
        if estimator == "dreg":
            self.one_graph_reason = "DReG's gradient hook on z"

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
            if self.draw_apart:  # a compiled step that cannot be one graph (base.py)
                torch._dynamo.graph_break()
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
