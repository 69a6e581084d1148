"""FactorVAE: the ELBO minus γ times a discriminator's estimate of the total correlation.

Hyunjik Kim, Andriy Mnih, "Disentangling by Factorising", 2018. The total correlation
TC = KL(q(z) || Π_d q(z_d)) is estimated by the density-ratio trick: a discriminator
D(z) is trained to tell samples of q(z) (a batch's latents) from samples of Π_d q(z_d)
(the same latents with each dimension permuted across the batch), and then

    TC ≈ E_q(z)[log D(z) / (1 - D(z))] = E_q(z)[logit D(z)].

The model's loss is ``-mean_B(log p(x|z) - KL - γ logit D(z))``; the discriminator's is
the cross-entropy ``(softplus(-logit D(z)) + softplus(logit D(z̃)))/2`` averaged over the
batch, with z̃ the permuted latents. The discriminator and its optimizer belong to the
objective (:meth:`~varfam.objectives.Objective.auxiliary_modules`): the training loop
steps them right after every step of the model, the checkpoint saves them, and
``model.safetensors`` leaves them out. Its step re-encodes the batch (without
gradients, after the model's update) and permutes those latents: the paper's
Algorithm 1 draws a second batch for z̃; one batch, as in most implementations, costs
one encoder pass instead of two.

The paper's discriminator and optimizer are the defaults: 6 hidden layers of 1,000
units with leaky ReLU (slope 0.2), Adam with learning rate 1e-4 and β = (0.5, 0.9);
γ defaults to 35 (the paper used 40 on dSprites; disentanglement_lib sweeps 10-100).

**What it composes with.** Every family whose latents live in R^D or the unit cube,
every prior and every likelihood. A permuted sphere or simplex point leaves the sphere
or simplex, so the product of marginals has another support and the TC is infinite:
``vmf``, ``powerspherical`` and ``gumbel`` are refused. A batch needs at least two
examples (per process under DDP) to be permuted: a batch size of 1 is refused. Under
DDP each process permutes its share of the batch and the discriminator's gradients are
averaged over the processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from varfam.errors import VarfamError
from varfam.objectives.base import Objective, kl_term, non_negative
from varfam.objectives.terms import Terms
from varfam.registry import OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["FactorVae", "Discriminator", "permute_dims"]

#: Family supports on which a permuted latent leaves the support (module doc).
_CLOSED_SUPPORTS = ("sphere", "simplex")


class Discriminator(nn.Module):
    """D(z): latents (B, D) → the logit (B,) that z came from q(z), not from Π_d q(z_d).

    >>> Discriminator(3, width=8, depth=2)(torch.zeros(5, 3)).shape
    torch.Size([5])
    """

    def __init__(self, latent_dim: int, width: int = 1000, depth: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = latent_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.LeakyReLU(0.2)]
            d = width
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).squeeze(-1)


def permute_dims(z: Tensor) -> Tensor:
    """Each column of ``z`` (B, D) permuted across the batch independently: samples of Π_d q(z_d).

    >>> z = torch.arange(6.0).view(3, 2)
    >>> sorted(permute_dims(z)[:, 1].tolist())
    [1.0, 3.0, 5.0]
    """
    order = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return z.gather(0, order)


@OBJECTIVES.register(
    "factorvae",
    "FactorVAE: the ELBO minus gamma (default 35) times a discriminator's estimate of the "
    "total correlation; the discriminator (options discriminator_width, discriminator_depth, "
    "discriminator_lr) trains beside the model",
    "Kim & Mnih 2018, Disentangling by Factorising",
)
class FactorVae(Objective):
    """Loss ``-mean_B(log p(x|z) - KL - γ logit D(z))``, D trained alongside (module doc).

    >>> FactorVae(gamma=10).auxiliary_modules() is None  # built by prepare()
    True
    """

    def __init__(
        self,
        *,
        gamma: float = 35.0,
        discriminator_width: int = 1000,
        discriminator_depth: int = 6,
        discriminator_lr: float = 1e-4,
        alpha: float | None = None,
        labelled_share: float | None = None,
    ) -> None:
        non_negative("factorvae", gamma=gamma)
        for name, value in (("discriminator_width", discriminator_width),
                            ("discriminator_depth", discriminator_depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise VarfamError(f"factorvae: option {name} must be a positive integer, "
                                  f"got {value!r}")
        if isinstance(discriminator_lr, bool) or not isinstance(discriminator_lr, (int, float)) \
                or not discriminator_lr > 0:
            raise VarfamError(f"factorvae: option discriminator_lr must be a positive number, "
                              f"got {discriminator_lr!r}")
        self._labelled_options("factorvae", alpha, labelled_share)
        self.gamma = float(gamma)
        self.width, self.depth = discriminator_width, discriminator_depth
        self.lr = float(discriminator_lr)
        self.discriminator: Discriminator | None = None
        self.optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------ what the loop calls
    def prepare(self, model: VAE, *, data_size: int, batch_size: int) -> None:
        """Refuse a batch of one or a closed latent support; build D and its optimizer."""
        super().prepare(model, data_size=data_size, batch_size=batch_size)
        if batch_size < 2:
            raise VarfamError(
                f"factorvae permutes each latent dimension across the batch and needs at least "
                f"2 examples per batch (per process), got {batch_size}; use --batch-size 2 or "
                "more"
            )
        self._check_family(model)
        self.build(model)

    def auxiliary_modules(self) -> nn.Module | None:
        return self.discriminator

    def auxiliary_optimizer(self) -> torch.optim.Optimizer | None:
        return self.optimizer

    def auxiliary_loss(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> Tensor:
        """The discriminator's cross-entropy on the batch ``x`` re-encoded and permuted."""
        discriminator = self.build(model)
        with torch.no_grad():
            z = model.encode(x, _known_labels(model, x, y)).sample()
        joint, product = discriminator(z), discriminator(permute_dims(z))
        return 0.5 * (F.softplus(-joint) + F.softplus(product)).mean()

    # ------------------------------------------------------------ the model's side
    def build(self, model: VAE) -> Discriminator:
        """The discriminator (made on first use, on the model's device) and its Adam."""
        if self.discriminator is None:
            self.discriminator = Discriminator(model.latent_dim, self.width, self.depth).to(
                model.device)
            self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr,
                                              betas=(0.5, 0.9))
        return self.discriminator

    def total_correlation(self, z: Tensor) -> Tensor:
        """The per-example estimate logit D(z) (B,) of the TC, nats (module doc)."""
        if self.discriminator is None:
            raise VarfamError("factorvae's discriminator is not built yet; train with "
                              "varfam.train, or call build(model) first")
        return self.discriminator(z)

    def terms(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> Terms:
        self.build(model)
        y = model.labels_of(x, y)
        q = model.encode(x, y)
        z = q.rsample()
        recon = model.decode(z, y).log_prob(x)
        kl = kl_term(q, model.prior_distribution(y), z)
        elbo = recon - kl
        return Terms(elbo - self.gamma * self.total_correlation(z), elbo, recon, kl)

    @staticmethod
    def _check_family(model: VAE) -> None:
        support = getattr(model.family, "latent_support", "real")
        if support in _CLOSED_SUPPORTS:
            raise VarfamError(
                f"factorvae compares q(z) with the product of its marginals, which leaves the "
                f"{support} this family's latents live on (the total correlation is infinite); "
                "use a family on R^D such as diagonal"
            )


def _known_labels(model: VAE, x: Tensor, y: Tensor | None) -> Tensor | None:
    """The labels to encode ``x`` with: ``y``, with hidden ones (-1) filled in by q(y|x)."""
    if not model.uses_labels:
        return None
    if y is None or not model.has_classifier:
        return model.labels_of(x, y)
    y = y.to(x.device)
    guess = model.classify(x).logits.argmax(-1)
    return torch.where(y >= 0, y, guess)
