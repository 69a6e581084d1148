"""Small models and data the tests share (also as fixtures in conftest.py)."""

from __future__ import annotations

from typing import Any

import torch

import varfam
from varfam import VAE


def small_vae(seed: int | None = 0, **overrides: Any) -> VAE:
    """A small VAE for scikit-learn's 8x8 digits (hidden 32, D = 3), built after
    ``torch.manual_seed(seed)`` (no seeding with ``seed=None``); ``overrides`` are
    :class:`~varfam.config.ModelConfig` fields."""
    if seed is not None:
        torch.manual_seed(seed)
    return VAE.build(**{"data_shape": (1, 8, 8), "hidden": (32,), "latent_dim": 3, **overrides})


def digits(n: int = 600) -> varfam.Dataset:
    """The first ``n`` training digits and max(n // 10, 1) test digits."""
    return varfam.load_dataset("digits").limit(n)
