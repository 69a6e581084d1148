"""A second, small VAE on the latents (Dai & Wipf 2019).

Dai & Wipf 2019, "Diagnosing and Enhancing VAE Models", argue that a VAE finds the
manifold of the data but not the distribution on it: its aggregate posterior q(z)
does not match N(0, I). Their fix is a second VAE whose *data* are the first one's
latents, with a learned observation variance gamma (so the second stage can fit
q(z) sharply), and whose own latents u are near N(0, I). Sampling draws u ~ N(0, I),
then z ~ N(m(u), gamma I) from the second decoder, and hands z to the first decoder
(Dai & Wipf keep only the mean m(u); with gamma near 0, as the paper's long training
reaches, the two agree, and with a larger gamma the noise keeps the spread of q(z)).

Here the second VAE is two MLPs of two ``hidden``-wide ReLU layers, its latent size
that of z (as in the paper), on standardized latents. pythae's
``TwoStageVAESampler`` is the same idea.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from varfam.errors import VarfamError
from varfam.samplers.base import SAMPLERS, Sampler, fit_by_adam

__all__ = ["TwoStageSampler", "SecondStage"]


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, outputs))


class SecondStage(nn.Module):
    """The second VAE: q(u|z) = N(mu(z), sigma(z)^2), p(u) = N(0, I),
    p(z|u) = N(m(u), gamma I) with one learned gamma. Latents z, u: (B, D)."""

    def __init__(self, latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.encoder = _mlp(latent_dim, hidden, 2 * latent_dim)
        self.decoder = _mlp(latent_dim, hidden, latent_dim)
        self.log_gamma = nn.Parameter(torch.zeros(()))

    def negative_elbo(self, z: Tensor) -> Tensor:
        """-ELBO of z (B, D), averaged over the batch, in nats."""
        loc, raw = self.encoder(z).chunk(2, dim=-1)
        q = Normal(loc, nn.functional.softplus(raw) + 1e-4)
        u = q.rsample()
        gamma = self.log_gamma.exp()
        recon = ((z - self.decoder(u)) ** 2 / (2 * gamma)
                 + 0.5 * (self.log_gamma + math.log(2 * math.pi))).sum(-1)
        kl = kl_divergence(q, Normal(torch.zeros_like(loc), torch.ones_like(loc))).sum(-1)
        return (recon + kl).mean()


@SAMPLERS.register(
    "two-stage",
    "a second small VAE on the encoder means, with a learned variance (options hidden, "
    "default 256; epochs, default 80)",
    "Dai & Wipf 2019, Diagnosing and Enhancing VAE Models",
)
class TwoStageSampler(Sampler):
    """z = shift + scale * (m(u) + sqrt(gamma) e), u, e ~ N(0, I), ``m`` the decoder of a
    second VAE fitted
    on standardized latents by Adam (``lr``, ``batch_size``) for ``epochs``, keeping the
    epoch with the best held-out bound.

    >>> import torch
    >>> two = TwoStageSampler(hidden=16, epochs=2)
    >>> two.fit_latents(torch.randn(100, 3)); two.sample(4).shape
    torch.Size([4, 3])
    """

    name = "two-stage"

    def __init__(
        self,
        *,
        hidden: int = 256,
        epochs: int = 80,
        lr: float = 1e-3,
        batch_size: int = 128,
        seed: int = 0,
        fit_on: str = "mean",
    ) -> None:
        super().__init__(seed=seed, fit_on=fit_on)
        for option, value in (("hidden", hidden), ("epochs", epochs),
                              ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise VarfamError(
                    f"sampler 'two-stage': {option} must be a positive integer, got {value!r}"
                )
        self.hidden, self.epochs, self.lr, self.batch_size = hidden, epochs, float(lr), batch_size

    def build(self, latent_dim: int, info: dict[str, Any]) -> None:
        super().build(latent_dim, info)
        self.register_buffer("shift", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))
        self.vae = SecondStage(latent_dim, self.hidden)

    def fit_latents(self, z: Tensor) -> None:
        self.build(z.shape[1], {})
        self.shift.copy_(z.mean(0))
        self.scale.copy_(z.std(0).clamp_min(1e-6))
        found = fit_by_adam(self.vae, self.vae.negative_elbo, (z - self.shift) / self.scale,
                            epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        self.info = {**found, "gamma": round(float(self.vae.log_gamma.detach().exp()), 6)}

    def draw(self, n: int, y: Tensor | None) -> Tensor:
        u = torch.randn(n, self.latent_dim, device=self.shift.device)
        noise = torch.randn_like(u) * (0.5 * self.vae.log_gamma).exp()
        return self.shift + self.scale * (self.vae.decoder(u) + noise)

    def describe(self) -> str:
        if "best_epoch" not in self.info:
            return "two-stage (not fitted)"
        return (f"two-stage: second VAE, epoch {self.info['best_epoch']}/{self.info['epochs']}, "
                f"gamma {self.info['gamma']:.3g}")
