"""DIP-VAE: the ELBO plus a penalty matching the aggregate posterior's covariance to the prior's.

Abhishek Kumar, Prasanna Sattigeri, Avinash Balakrishnan, "Variational Inference of
Disentangled Latent Concepts from Unlabeled Observations", 2018. With the encoder's
mean μ(x) and covariance Σ(x), over the batch of B examples:

- **DIP-VAE-I** (``kind="i"``): ``C = Cov_B[μ(x)]``, the covariance of the means;
- **DIP-VAE-II** (``kind="ii"``): ``C = Cov_B[μ(x)] + mean_B Σ(x)``, the covariance of
  q(z) = mean_B q(z|x) itself;

and the penalty ``λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii - S_ii)²`` with S the prior's
covariance (the identity of the standard normal, the paper's prior). The loss is
``-mean_B ELBO + penalty`` (the batch covariance is the paper's and disentanglement_lib's:
the 1/B estimate, E[μμᵀ] - E[μ]E[μ]ᵀ). Defaults follow disentanglement_lib:
``lambda_od = 10`` and ``lambda_d = 10 λ_od`` for DIP-VAE-I, ``λ_od`` for DIP-VAE-II.

**What it composes with.** Families whose q(z|x) has a mean in closed form (``diagonal``,
``full``, ``lowrank``, ``laplace``, ``student``, ``mixture``, the sphere's), and for
DIP-VAE-II also a covariance (the Gaussians, ``laplace``, ``student``); priors that are
Gaussian (``standard``, ``learned``), whose covariance is the target. Flows, the
hierarchical family and the relaxed discrete ones have no closed-form mean, and mixture
or flow priors no Gaussian covariance to match: both are refused in one line. Under DDP
each process penalises the covariance of its share of the batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from varfam.errors import VarfamError
from varfam.objectives.base import Objective, kl_term, non_negative, probe_posterior
from varfam.objectives.terms import Terms
from varfam.parts import fp32
from varfam.registry import OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["Dip", "KINDS", "dip_penalty", "posterior_mean", "posterior_covariance",
           "prior_covariance"]

#: DIP-VAE-I and DIP-VAE-II.
KINDS = ("i", "ii")


def posterior_mean(q: Distribution) -> Tensor:
    """The mean μ(x) of q(z|x), (B, D); a one-line error where it has no closed form."""
    try:
        return q.mean
    except NotImplementedError:
        raise VarfamError(
            f"dip needs the mean of q(z|x), which {type(q).__name__} does not have in closed "
            "form; use a family such as diagonal, full, lowrank, laplace or mixture"
        ) from None


def posterior_covariance(q: Distribution) -> Tensor:
    """The covariance Σ(x) of q(z|x), (B, D, D); a one-line error where it has none here."""
    cov = getattr(type(q), "covariance_matrix", None)
    if cov is not None:
        return q.covariance_matrix
    if isinstance(q, Independent) and q.reinterpreted_batch_ndims == 1:
        try:
            return torch.diag_embed(q.variance)
        except NotImplementedError:
            pass
    raise VarfamError(
        f"dip kind=ii needs the covariance of q(z|x), which {type(q).__name__} does not have "
        "in closed form; use kind=i or a family such as diagonal, full, lowrank or laplace"
    )


def prior_covariance(p: Distribution) -> Tensor:
    """The covariance of a Gaussian prior p(z), (D, D) (or (B, D, D) for p(z|y))."""
    if getattr(type(p), "covariance_matrix", None) is not None:
        return p.covariance_matrix
    if (isinstance(p, Independent) and p.reinterpreted_batch_ndims == 1
            and isinstance(p.base_dist, Normal)):
        return torch.diag_embed(p.variance)
    raise VarfamError(
        f"dip matches the covariance of q(z) to a Gaussian prior's; this prior is a "
        f"{type(p).__name__}; use the standard or learned prior"
    )


def dip_penalty(cov: Tensor, target: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """``λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii - S_ii)²`` for C (D, D) and S (D, D): a 0-d tensor.

    >>> float(dip_penalty(torch.eye(3), torch.eye(3), 10.0, 100.0))
    0.0
    """
    diag = torch.diagonal(cov)
    off = cov - torch.diag_embed(diag)
    return lambda_od * off.pow(2).sum() + lambda_d * (diag - torch.diagonal(target)).pow(2).sum()


@OBJECTIVES.register(
    "dip",
    "DIP-VAE: the ELBO plus a penalty matching the covariance of q(z) to the prior's "
    "(options kind i|ii, lambda_od, lambda_d)",
    "Kumar, Sattigeri & Balakrishnan 2018, Variational Inference of Disentangled Latent "
    "Concepts from Unlabeled Observations",
)
class Dip(Objective):
    """``-mean_B(log p(x|z) - KL) + λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii - S_ii)²`` (module doc).

    Options: ``kind`` (``"i"``, the default, or ``"ii"``), ``lambda_od`` (default 10),
    ``lambda_d`` (default 10 λ_od for kind i, λ_od for kind ii).

    >>> Dip(kind="i").lambda_d
    100.0
    """

    def __init__(
        self,
        *,
        kind: str = "i",
        lambda_od: float = 10.0,
        lambda_d: float | None = None,
        alpha: float | None = None,
        labelled_share: float | None = None,
    ) -> None:
        if kind not in KINDS:
            raise VarfamError(f"dip: option kind must be {' or '.join(KINDS)}, got {kind!r}")
        non_negative("dip", lambda_od=lambda_od)
        if lambda_d is not None:
            non_negative("dip", lambda_d=lambda_d)
        self._labelled_options("dip", alpha, labelled_share)
        self.kind = kind
        self.lambda_od = float(lambda_od)
        self.lambda_d = float(lambda_d if lambda_d is not None
                              else (10.0 if kind == "i" else 1.0) * lambda_od)

    def prepare(self, model: VAE, *, data_size: int, batch_size: int) -> None:
        """Refuse, before training, a family without the moments or a non-Gaussian prior."""
        super().prepare(model, data_size=data_size, batch_size=batch_size)
        q = probe_posterior(model)
        if q is not None:
            posterior_mean(q)
            if self.kind == "ii":
                posterior_covariance(q)
        if not model.uses_labels:
            with torch.no_grad():
                prior_covariance(model.prior_distribution())

    def covariance(self, q: Distribution) -> Tensor:
        """C (D, D): the batch covariance of the means (kind i), plus the mean Σ(x) (ii)."""
        mu = posterior_mean(q)
        centred = mu - mu.mean(0)
        cov = centred.T @ centred / mu.shape[0]
        if self.kind == "ii":
            cov = cov + posterior_covariance(q).mean(0)
        return cov

    def terms(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> Terms:
        y = model.labels_of(x, y)
        q = model.encode(x, y)
        z = q.rsample()
        recon = model.decode(z, y).log_prob(x)
        p = model.prior_distribution(y)
        kl = kl_term(q, p, z)
        with fp32(z.device.type):
            target = prior_covariance(p)
            if target.dim() == 3:  # p(z|y): the covariance of the batch's mixture of them
                means = p.mean - p.mean.mean(0)
                target = target.mean(0) + means.T @ means / means.shape[0]
            penalty = dip_penalty(self.covariance(q), target, self.lambda_od, self.lambda_d)
        elbo = recon - kl
        return Terms(elbo - penalty, elbo, recon, kl)
