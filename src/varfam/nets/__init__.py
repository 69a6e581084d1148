"""Encoder and decoder networks: plain ``nn.Module``s, registered as architectures.

An architecture is a factory ``(data_shape, hidden, latent_dim, out_params) →
(encoder, decoder)``:

- the encoder maps x ``(B, *data_shape)`` to features h ``(B, encoder.feature_dim)``
  (the family owns the final heads);
- the decoder maps z ``(N, D)`` to likelihood parameters ``(N, out_params, *data_shape)``.

Any user module with those shapes works in their place. The built-in architectures
take the option ``masked`` for data with missing values (:class:`MaskedInput`).

One file per architecture: :mod:`~varfam.nets.dense` (``mlp``),
:mod:`~varfam.nets.gated` (``gated-mlp``), :mod:`~varfam.nets.convolutional`
(``conv``), :mod:`~varfam.nets.tabular` (``tabular``); the masked input in
:mod:`~varfam.nets.masked`, the layers they share in :mod:`~varfam.nets.base`, the
labels' inputs in :mod:`~varfam.nets.conditioning`.
"""

from __future__ import annotations

# import order = registration order = the order `varfam list` shows
# isort: off
from varfam.nets.dense import MLPDecoder, MLPEncoder, mlp
from varfam.nets.gated import GatedDense, gated_mlp
from varfam.nets.convolutional import ConvDecoder, ConvEncoder, conv
# isort: on
from varfam.nets.masked import MaskedInput

__all__ = [
    "MLPEncoder",
    "MLPDecoder",
    "GatedDense",
    "ConvEncoder",
    "ConvDecoder",
    "mlp",
    "gated_mlp",
    "conv",
    "MaskedInput",
]
