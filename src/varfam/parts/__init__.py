"""What every part of a model shares, below the parts packages themselves.

- :mod:`~varfam.parts.hooks`: the lifecycle hooks the trainer calls on every family,
  prior and likelihood (:class:`TrainingHooks`);
- :mod:`~varfam.parts.precision`: devices and numeric precision (bf16 networks, fp32
  densities);
- :mod:`~varfam.parts.normal`: the fast diagonal Gaussian that the ``diagonal`` family,
  every flow's base and the ``standard`` prior share (:class:`DiagonalNormal`).
"""

from __future__ import annotations

from varfam.parts.hooks import TrainingHooks, overrides
from varfam.parts.normal import DiagonalNormal, kl_diagonal_normal
from varfam.parts.precision import (
    autocast,
    bf16_supported,
    fp32,
    network_precision,
    resolve_device,
    use_bf16,
)

__all__ = [
    "TrainingHooks", "overrides", "DiagonalNormal", "kl_diagonal_normal", "resolve_device",
    "bf16_supported", "use_bf16", "autocast", "fp32", "network_precision",
]
