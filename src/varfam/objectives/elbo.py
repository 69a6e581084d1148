"""The evidence lower bound, with β, KL warm-up and free bits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from varfam.objectives.base import Objective, kl_per_dimension, kl_term, non_negative
from varfam.objectives.terms import Terms
from varfam.registry import OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["Elbo"]


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
        non_negative("elbo", beta=beta, warmup_epochs=warmup_epochs, free_bits=free_bits)
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
