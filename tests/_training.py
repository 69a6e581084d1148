"""A helper shared by the family tests: a few Adam steps of the ELBO that must stay finite."""

from __future__ import annotations

import torch

from varfam import VAE
from varfam.objectives import Elbo


def train_steps_finite(model: VAE, steps: int = 2, batch: int = 32) -> None:
    """Take ``steps`` ELBO steps on random (batch, 1, 8, 8) data; loss, KL and every
    parameter's gradient must be finite at each step."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(batch, 1, 8, 8)
    for _ in range(steps):
        res = Elbo()(model, x)
        opt.zero_grad()
        res.loss.backward()
        assert torch.isfinite(res.loss) and torch.isfinite(res.kl).all()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
