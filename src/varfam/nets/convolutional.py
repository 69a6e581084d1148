"""The ``conv`` architecture: convolutional encoder and decoder for (C, H, W) images."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from varfam.errors import VarfamError
from varfam.nets.masked import masked_encoder
from varfam.registry import ARCHITECTURES

__all__ = ["ConvEncoder", "ConvDecoder", "conv"]


def _conv_check(data_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(data_shape) != 3 or min(data_shape[1:]) < 4:
        raise VarfamError(
            f"the conv architecture needs images of shape (C, H, W) with H, W >= 4, "
            f"got {tuple(data_shape)}; use --arch mlp for this data"
        )
    return data_shape  # type: ignore[return-value]


class ConvEncoder(nn.Module):
    """Two stride-2 4×4 convolutions (32, 64 channels), then a Linear layer to ``hidden[-1]``."""

    def __init__(self, data_shape: tuple[int, ...], hidden: tuple[int, ...]) -> None:
        super().__init__()
        c, h, w = _conv_check(data_shape)
        self.conv = nn.Sequential(
            nn.Conv2d(c, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU()
        )
        with torch.no_grad():
            n = self.conv(torch.zeros(1, c, h, w)).numel()
        self.feature_dim = hidden[-1] if hidden else 256
        self.fc = nn.Sequential(nn.Linear(n, self.feature_dim), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).flatten(1))


class ConvDecoder(nn.Module):
    """Linear to a 64×⌈H/4⌉×⌈W/4⌉ map, two stride-2 transposed convolutions, crop to (H, W)."""

    def __init__(
        self, data_shape: tuple[int, ...], hidden: tuple[int, ...], latent_dim: int, out_params: int
    ) -> None:
        super().__init__()
        c, h, w = _conv_check(data_shape)
        self.data_shape = (c, h, w)
        self.out_params = out_params
        self.h4, self.w4 = -(-h // 4), -(-w // 4)
        width = hidden[-1] if hidden else 256
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, width),
            nn.ReLU(),
            nn.Linear(width, 64 * self.h4 * self.w4),
            nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, out_params * c, 4, 2, 1),
        )

    def forward(self, z: Tensor) -> Tensor:
        c, h, w = self.data_shape
        y = self.deconv(self.fc(z).view(-1, 64, self.h4, self.w4))[:, :, :h, :w]
        return y.reshape(z.shape[0], self.out_params, c, h, w)


@ARCHITECTURES.register("conv", "convolutional encoder/decoder for (C, H, W) images, any size")
def conv(
    data_shape: tuple[int, ...], hidden: tuple[int, ...], latent_dim: int, out_params: int,
    *, masked: bool = False,
) -> tuple[nn.Module, nn.Module]:
    return masked_encoder(lambda s: ConvEncoder(s, hidden), data_shape, masked), ConvDecoder(
        data_shape, hidden, latent_dim, out_params
    )
