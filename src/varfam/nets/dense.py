"""The ``mlp`` architecture: fully connected encoder and decoder."""

from __future__ import annotations

import math

from torch import Tensor, nn

from varfam.errors import VarfamError
from varfam.nets.base import Stack, linear_relu, through
from varfam.nets.masked import masked_encoder
from varfam.registry import ARCHITECTURES

__all__ = ["MLPEncoder", "MLPDecoder", "mlp"]


class MLPEncoder(nn.Module):
    """Flatten x, then Linear+ReLU layers (or ``stack``'s layers) of the ``hidden`` widths."""

    def __init__(
        self, data_shape: tuple[int, ...], hidden: tuple[int, ...], stack: Stack | None = None
    ) -> None:
        super().__init__()
        if not hidden:
            raise VarfamError("the mlp architecture needs at least one hidden width (--hidden 400)")
        self.net = (stack or linear_relu)([math.prod(data_shape), *hidden])
        self.feature_dim = hidden[-1]

    def forward(self, x: Tensor) -> Tensor:
        return through(self.net, x.flatten(1))


class MLPDecoder(nn.Module):
    """z → Linear+ReLU layers (``hidden`` reversed) → Linear to ``out_params × prod(data_shape)``.

    ``stack`` replaces the Linear+ReLU hidden layers (e.g. gated layers).
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        hidden: tuple[int, ...],
        latent_dim: int,
        out_params: int,
        stack: Stack | None = None,
    ) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.out_params = out_params
        widths = [latent_dim, *reversed(hidden)]
        self.net = nn.Sequential(
            *(stack or linear_relu)(widths),
            nn.Linear(widths[-1], out_params * math.prod(data_shape)),
        )

    def forward(self, z: Tensor) -> Tensor:
        return through(self.net, z).view(z.shape[0], self.out_params, *self.data_shape)


@ARCHITECTURES.register("mlp", "fully connected encoder/decoder (textbook: 784-400-20)")
def mlp(
    data_shape: tuple[int, ...], hidden: tuple[int, ...], latent_dim: int, out_params: int,
    *, masked: bool = False,
) -> tuple[nn.Module, nn.Module]:
    return masked_encoder(lambda s: MLPEncoder(s, hidden), data_shape, masked), MLPDecoder(
        data_shape, hidden, latent_dim, out_params
    )
