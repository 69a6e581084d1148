"""Evaluation: test ELBO and its terms, in fp32, without gradients.

All numbers are means over examples, in nats per example.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .objectives import kl_term

if TYPE_CHECKING:  # pragma: no cover
    from .model import VAE

__all__ = ["elbo_terms", "evaluate_elbo"]


def elbo_terms(model: VAE, x: Tensor) -> tuple[Tensor, Tensor]:
    """Single-sample (reconstruction, KL) per example for a batch ``x``: two (B,) tensors."""
    q = model.encode(x)
    z = q.sample()
    return model.decode(z).log_prob(x), kl_term(q, model.prior_distribution(), z)


@torch.inference_mode()
def evaluate_elbo(model: VAE, x: Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Mean test ELBO, reconstruction term and KL over ``x`` (N, *data_shape), in nats.

    Runs in fp32 with the model in eval mode (restored afterwards).
    """
    was_training = model.training
    model.eval()
    device = model.device
    recon_sum = kl_sum = 0.0
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(device, torch.float32)
            recon, kl = elbo_terms(model, xb)
            recon_sum += float(recon.double().sum())
            kl_sum += float(kl.double().sum())
    finally:
        model.train(was_training)
    n = x.shape[0]
    return {
        "elbo": (recon_sum - kl_sum) / n,
        "reconstruction": recon_sum / n,
        "kl": kl_sum / n,
    }
