"""The ``gated-mlp`` architecture: the MLP with gated dense layers (the VampPrior paper's)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from varfam.nets.dense import MLPDecoder, MLPEncoder
from varfam.nets.masked import masked_encoder
from varfam.registry import ARCHITECTURES

__all__ = ["GatedDense", "gated_stack", "gated_mlp"]


class GatedDense(nn.Module):
    """y = (W x + b) * sigmoid(V x + c), the gated layer of the VampPrior paper.

    Dauphin, Fan, Auli & Grangier 2017, "Language Modeling with Gated Convolutional Networks".
    """

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.h = nn.Linear(n_in, n_out)
        self.g = nn.Linear(n_in, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


def gated_stack(sizes: list[int]) -> nn.Sequential:
    """:class:`GatedDense` layers for the widths ``sizes`` [in, h1, h2, ...] (a ``Stack``)."""
    return nn.Sequential(*(GatedDense(a, b) for a, b in zip(sizes[:-1], sizes[1:])))


@ARCHITECTURES.register(
    "gated-mlp",
    "gated dense encoder/decoder (the VampPrior paper's 300-300 MLP)",
    "Tomczak & Welling 2018, VAE with a VampPrior",
)
def gated_mlp(
    data_shape: tuple[int, ...], hidden: tuple[int, ...], latent_dim: int, out_params: int,
    *, masked: bool = False,
) -> tuple[nn.Module, nn.Module]:
    return masked_encoder(
        lambda s: MLPEncoder(s, hidden, gated_stack), data_shape, masked
    ), MLPDecoder(data_shape, hidden, latent_dim, out_params, gated_stack)
