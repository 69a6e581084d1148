"""A masked autoregressive flow fitted on the aggregate posterior.

The latents of the training set are standardized per coordinate and a MAF
(Papamakarios, Pavlakou & Murray 2017, "Masked Autoregressive Flow for Density
Estimation"; ``zuko.flows.MAF``) is fitted to them by maximum likelihood, keeping
the epoch with the best held-out likelihood. Sampling inverts the autoregression (D
passes per transform) and undoes the standardization. pythae's ``MAFSampler`` is the
same idea.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from varfam.errors import VarfamError
from varfam.samplers.base import SAMPLERS, Sampler, fit_by_adam

__all__ = ["FlowSampler"]


@SAMPLERS.register(
    "flow",
    "masked autoregressive flow on the encoder means of the training set (options "
    "transforms, default 4; hidden, default 128; epochs, default 60)",
    "Papamakarios, Pavlakou & Murray 2017, Masked Autoregressive Flow for Density Estimation",
)
class FlowSampler(Sampler):
    """z = shift + scale * f(u), u ~ N(0, I): a MAF ``f`` of ``transforms`` affine steps
    (MADE nets of two ``hidden``-wide layers) on standardized latents.

    Trained by Adam (``lr``, ``batch_size``) for ``epochs``, keeping the epoch with the
    lowest negative log-likelihood on a held-out tenth of the latents.

    >>> import torch
    >>> flow = FlowSampler(transforms=2, hidden=16, epochs=2)
    >>> flow.fit_latents(torch.randn(100, 3)); flow.sample(4).shape
    torch.Size([4, 3])
    """

    name = "flow"

    def __init__(
        self,
        *,
        transforms: int = 4,
        hidden: int = 128,
        epochs: int = 60,
        lr: float = 1e-3,
        batch_size: int = 256,
        seed: int = 0,
        fit_on: str = "mean",
    ) -> None:
        super().__init__(seed=seed, fit_on=fit_on)
        for option, value in (("transforms", transforms), ("hidden", hidden),
                              ("epochs", epochs), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise VarfamError(
                    f"sampler 'flow': {option} must be a positive integer, got {value!r}"
                )
        self.transforms, self.hidden, self.epochs = transforms, hidden, epochs
        self.lr, self.batch_size = float(lr), batch_size

    def build(self, latent_dim: int, info: dict[str, Any]) -> None:
        from varfam.priors.flow import _zuko_flows  # zuko, without its global change to torch

        super().build(latent_dim, info)
        self.register_buffer("shift", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))
        self.flow = _zuko_flows().MAF(features=latent_dim, transforms=self.transforms,
                                      hidden_features=(self.hidden, self.hidden))

    def fit_latents(self, z: Tensor) -> None:
        self.build(z.shape[1], {})
        self.shift.copy_(z.mean(0))
        self.scale.copy_(z.std(0).clamp_min(1e-6))
        u = (z - self.shift) / self.scale

        def nll(batch: Tensor) -> Tensor:
            return -self.flow().log_prob(batch).mean()

        found = fit_by_adam(self.flow, nll, u, epochs=self.epochs, lr=self.lr,
                            batch_size=self.batch_size)
        # in nats per example of z itself: the standardization's log-Jacobian added back
        jacobian = float(self.scale.log().sum())
        train, held_out = found.pop("train_loss"), found.pop("held_out_loss")
        self.info = {**found, "train_nll": round(train + jacobian, 4),
                     "held_out_nll": round(held_out + jacobian, 4)}

    def log_prob(self, z: Tensor) -> Tensor:
        """log density of latents z (..., D) → (...), nats."""
        return self.flow().log_prob((z - self.shift) / self.scale) - self.scale.log().sum()

    def draw(self, n: int, y: Tensor | None) -> Tensor:
        return self.shift + self.scale * self.flow().sample((n,))

    def describe(self) -> str:
        if "best_epoch" not in self.info:
            return "flow (not fitted)"
        return (f"flow: MAF, {self.transforms} transforms, epoch {self.info['best_epoch']}"
                f"/{self.info['epochs']}, held-out NLL {self.info['held_out_nll']:.2f} nats")
