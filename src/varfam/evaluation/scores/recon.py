"""``recon``: the negative reconstruction term ``-E_q(z|x)[log p(x|z)]``.

The expected log-likelihood of the input under its own reconstruction, averaged over
``k`` draws of z, without the KL term: what reconstruction-error detectors score
(pyod's VAE scores the distance between x and one stochastic reconstruction). Kept
for comparison; it ignores how unusual the code z is.

>>> import torch, varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> NegativeReconstruction(k=4)(model, torch.rand(5, 1, 8, 8).round()).shape
torch.Size([5])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from varfam.evaluation.scores.base import Score, check_positive, rows_per_block
from varfam.registry import SCORES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["NegativeReconstruction", "reconstruction"]


@torch.inference_mode()
def reconstruction(model: VAE, x: Tensor, k: int, memory_mb: float = 8.0) -> Tensor:
    """``E_q(z|x)[log p(x|z)]`` per row of ``x`` (N, *data_shape), ``k`` draws: (N,) float64."""
    device = model.device
    b = rows_per_block(model, k, memory_mb)
    out = []
    for i in range(0, x.shape[0], b):
        xb = x[i : i + b].to(device, torch.float32)
        z = model.encode(xb).sample((k,))  # (k, B, D)
        out.append(model.log_likelihood(xb, z).double().mean(0).cpu())
    return torch.cat(out)


@SCORES.register(
    "recon",
    "-E_q[log p(x|z)], the reconstruction term alone, k draws (option k, default 10)",
    "An & Cho 2015, Variational Autoencoder based Anomaly Detection using Reconstruction "
    "Probability",
)
@dataclass(kw_only=True)
class NegativeReconstruction(Score):
    """``-E_q[log p(x|z)]`` per row, nats, over ``k`` draws of z (see the module doc)."""

    k: int = 10
    name = "recon"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.k, "score option k")

    def compute(self, model: VAE, x: Tensor, y: Tensor | None) -> Tensor:
        return -reconstruction(model, x, self.k, self.memory_mb)
