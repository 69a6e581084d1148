"""The VAE: encoder network, family, decoder network, likelihood and prior wired together.

>>> import torch, varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(32,))
>>> q = model.encode(torch.rand(5, 1, 8, 8))      # a torch Distribution over z
>>> q.rsample().shape
torch.Size([5, 2])
>>> model.sample(3).shape
torch.Size([3, 1, 8, 8])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from . import families as _families  # noqa: F401  (registers the built-in parts)
from . import likelihoods as _likelihoods  # noqa: F401
from . import nets as _nets  # noqa: F401
from . import priors as _priors  # noqa: F401
from .config import ModelConfig, RunConfig
from .precision import fp32
from .registry import ARCHITECTURES, FAMILIES, LIKELIHOODS, PRIORS

__all__ = ["VAE"]


def _full_precision(t: Tensor) -> Tensor:
    """Cast bf16/fp16 network outputs (from autocast) to fp32; leave fp32/fp64 alone."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class VAE(nn.Module):
    """A variational autoencoder made of five parts.

    Shapes: data ``x`` is ``(B, *data_shape)``; latents ``z`` are ``(B, D)`` (or
    ``(k, B, D)`` with ``k`` importance samples where stated). Log-densities are
    per example, in nats.
    """

    def __init__(
        self,
        encoder: nn.Module,
        family: nn.Module,
        decoder: nn.Module,
        likelihood: nn.Module,
        prior: nn.Module,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.family = family
        self.decoder = decoder
        self.likelihood = likelihood
        self.prior = prior
        self.config = config

    # ---------------------------------------------------------------- building
    @classmethod
    def build(cls, config: ModelConfig | None = None, **overrides: Any) -> VAE:
        """Build a model from a :class:`ModelConfig` and/or keyword overrides.

        Keywords are the fields of :class:`ModelConfig`: ``data_shape``, ``arch``,
        ``hidden``, ``latent_dim``, ``family`` (+``family_options``), ``prior``
        (+``prior_options``; ``None`` picks the family's natural prior, recorded in the
        model's config), ``likelihood`` (+``likelihood_options``).
        """
        cfg = ModelConfig(**{**(config.__dict__ if config else {}), **overrides})
        likelihood = LIKELIHOODS.build(
            cfg.likelihood, cfg.data_shape, options=cfg.likelihood_options
        )
        encoder, decoder = ARCHITECTURES.get(cfg.arch)(
            cfg.data_shape, cfg.hidden, cfg.latent_dim, likelihood.params_per_value
        )
        family = FAMILIES.build(
            cfg.family, encoder.feature_dim, cfg.latent_dim, options=cfg.family_options
        )
        if cfg.prior is None:  # the family's natural prior (N(0, I), the sphere, a categorical)
            cfg.prior = family.default_prior
        if cfg.prior == family.default_prior:  # e.g. K and temperature of a relaxed categorical
            cfg.prior_options = {
                **getattr(family, "default_prior_options", {}),
                **cfg.prior_options,
            }
        prior = PRIORS.build(
            cfg.prior, cfg.latent_dim, cfg.data_shape, options=cfg.prior_options
        )
        return cls(encoder, family, decoder, likelihood, prior, cfg)

    @property
    def latent_dim(self) -> int:
        return self.family.latent_dim

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.likelihood.data_shape

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---------------------------------------------------------------- the maps
    def encode(self, x: Tensor) -> Distribution:
        """q(z|x) for a batch ``x`` (B, *data_shape): batch_shape (B,), event_shape (D,)."""
        h = self.encoder(x)
        with fp32(h.device.type):
            return self.family(_full_precision(h))

    def encode_location(self, x: Tensor) -> Tensor:
        """A point summary of q(z|x) (its mean where defined), shape (B, D)."""
        h = self.encoder(x)
        with fp32(h.device.type):
            return self.family.location(_full_precision(h))

    def decode(self, z: Tensor) -> Distribution:
        """p(x|z) for latents ``z`` (N, D): batch_shape (N,), event_shape data_shape."""
        params = self.decoder(z)
        with fp32(params.device.type):
            return self.likelihood(_full_precision(params))

    def prior_distribution(self) -> Distribution:
        """p(z): batch_shape (), event_shape (D,)."""
        with fp32(self.device.type):
            return self.prior(self.encode)

    def observe(self, x: Tensor) -> Any:
        """What the likelihood computes from ``x`` (B, *data_shape) alone, or None.

        Pass it to :meth:`log_likelihood` to score the same ``x`` under many batches of
        latents without computing it again (the autoregressive likelihood's context).
        """
        observe = getattr(self.likelihood, "observe", None)
        if observe is None:
            return None
        with fp32(x.device.type):
            return observe(x)

    def log_likelihood(self, x: Tensor, z: Tensor, observed: Any = None) -> Tensor:
        """log p(x|z) in nats for ``z`` of shape (..., B, D) → (..., B); decodes all at once.

        ``observed``: :meth:`observe` of this ``x``, where the caller has it.
        """
        lead = z.shape[:-1]
        px = self.decode(z.reshape(-1, z.shape[-1]))
        if hasattr(px, "log_prob_tiled"):  # work on x alone done once per example, not per z
            return px.log_prob_tiled(x, tuple(lead), observed)
        xs = x.expand(*lead[:-1], *x.shape).reshape(-1, *x.shape[1:])
        return px.log_prob(xs).view(lead)

    # ---------------------------------------------------------------- pictures
    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """``n`` new data points: decoded means of z ~ p(z), shape (n, *data_shape)."""
        return self.decode(self.prior_distribution().sample((n,))).mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor, draws: int = 1) -> Tensor:
        """Decoded means of z ~ q(z|x): shape (B, *data_shape), or (draws, B, ...) if draws > 1."""
        z = self.encode(x).sample((draws,))
        out = self.decode(z.reshape(-1, z.shape[-1])).mean.view(draws, *x.shape)
        return out[0] if draws == 1 else out

    # ---------------------------------------------------------------- files
    def save(self, run_dir: str | Path, train_config: Any = None) -> None:
        """Write ``model.safetensors`` (and ``config.json`` if absent) into ``run_dir``."""
        from .checkpoint import save_model

        save_model(self, run_dir, train_config)

    @classmethod
    def load(cls, run_dir: str | Path, map_location: str | torch.device = "cpu") -> VAE:
        """Rebuild a model from a run folder; weights only from safetensors."""
        from .checkpoint import load_model

        return load_model(run_dir, map_location)

    def run_config(self, train_config: Any = None) -> RunConfig:
        model = self.config or ModelConfig()
        return RunConfig(model=model, train=train_config or RunConfig().train)
