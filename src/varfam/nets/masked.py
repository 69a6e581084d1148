"""The masked input: an encoder of data with missing values sees where they are."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["MaskedInput", "masked_encoder"]


class MaskedInput(nn.Module):
    """Feeds ``net`` the input with missing values (NaN) set to 0, stacked with the observed
    mask along dim 1 (channels, or vector entries): ``net`` is built for twice as many.

    The architectures' option ``masked`` (set by ``varfam train --mask``) adds it, so the
    encoder of data with missing values sees where they are (Mattei & Frellsen 2019, MIWAE).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.feature_dim = net.feature_dim

    def forward(self, x: Tensor) -> Tensor:
        observed = ~torch.isnan(x)
        filled = torch.where(observed, x, torch.zeros_like(x))
        return self.net(torch.cat([filled, observed.to(x.dtype)], 1))


def masked_encoder(make: Callable[[tuple[int, ...]], nn.Module], data_shape: tuple[int, ...],
                   masked: bool) -> nn.Module:
    """``make(data_shape)``, or with ``masked`` for [values, mask] (:class:`MaskedInput`)."""
    if not masked:
        return make(data_shape)
    return MaskedInput(make((2 * data_shape[0], *data_shape[1:])))
