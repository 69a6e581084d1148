"""Encoder and decoder networks: plain ``nn.Module``s, registered as architectures.

An architecture is a factory ``(data_shape, hidden, latent_dim, out_params) →
(encoder, decoder)``:

- the encoder maps x ``(B, *data_shape)`` to features h ``(B, encoder.feature_dim)``
  (the family owns the final heads);
- the decoder maps z ``(N, D)`` to likelihood parameters ``(N, out_params, *data_shape)``.

Any user module with those shapes works in their place. The built-in architectures
take the option ``masked`` for data with missing values (:class:`MaskedInput`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from varfam.errors import VarfamError
from varfam.registry import ARCHITECTURES

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


#: Builds the hidden layers for a list of widths [in, h1, h2, ...].
Stack = Callable[[list[int]], nn.Sequential]


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def _through(layers: nn.Sequential, x: Tensor) -> Tensor:
    """``layers(x)``, calling each layer (and its hooks) but not the container itself: one
    module call fewer per network and step (a hook on the ``nn.Sequential`` is not called)."""
    for layer in layers:
        x = layer(x)
    return x


class MLPEncoder(nn.Module):
    """Flatten x, then Linear+ReLU layers (or ``stack``'s layers) of the ``hidden`` widths."""

    def __init__(
        self, data_shape: tuple[int, ...], hidden: tuple[int, ...], stack: Stack | None = None
    ) -> None:
        super().__init__()
        if not hidden:
            raise VarfamError("the mlp architecture needs at least one hidden width (--hidden 400)")
        self.net = (stack or _mlp)([math.prod(data_shape), *hidden])
        self.feature_dim = hidden[-1]

    def forward(self, x: Tensor) -> Tensor:
        return _through(self.net, x.flatten(1))


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
            *(stack or _mlp)(widths), nn.Linear(widths[-1], out_params * math.prod(data_shape))
        )

    def forward(self, z: Tensor) -> Tensor:
        return _through(self.net, z).view(z.shape[0], self.out_params, *self.data_shape)


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


def _gated(sizes: list[int]) -> nn.Sequential:
    return nn.Sequential(*(GatedDense(a, b) for a, b in zip(sizes[:-1], sizes[1:])))


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


def _encoder(make: Callable[[tuple[int, ...]], nn.Module], data_shape: tuple[int, ...],
             masked: bool) -> nn.Module:
    """``make(data_shape)``, or with ``masked`` for [values, mask] (:class:`MaskedInput`)."""
    if not masked:
        return make(data_shape)
    return MaskedInput(make((2 * data_shape[0], *data_shape[1:])))


@ARCHITECTURES.register("mlp", "fully connected encoder/decoder (textbook: 784-400-20)")
def mlp(
    data_shape: tuple[int, ...], hidden: tuple[int, ...], latent_dim: int, out_params: int,
    *, masked: bool = False,
) -> tuple[nn.Module, nn.Module]:
    return _encoder(lambda s: MLPEncoder(s, hidden), data_shape, masked), MLPDecoder(
        data_shape, hidden, latent_dim, out_params
    )


@ARCHITECTURES.register(
    "gated-mlp",
    "gated dense encoder/decoder (the VampPrior paper's 300-300 MLP)",
    "Tomczak & Welling 2018, VAE with a VampPrior",
)
def gated_mlp(
    data_shape: tuple[int, ...], hidden: tuple[int, ...], latent_dim: int, out_params: int,
    *, masked: bool = False,
) -> tuple[nn.Module, nn.Module]:
    return _encoder(lambda s: MLPEncoder(s, hidden, _gated), data_shape, masked), MLPDecoder(
        data_shape, hidden, latent_dim, out_params, _gated
    )


@ARCHITECTURES.register("conv", "convolutional encoder/decoder for (C, H, W) images, any size")
def conv(
    data_shape: tuple[int, ...], hidden: tuple[int, ...], latent_dim: int, out_params: int,
    *, masked: bool = False,
) -> tuple[nn.Module, nn.Module]:
    return _encoder(lambda s: ConvEncoder(s, hidden), data_shape, masked), ConvDecoder(
        data_shape, hidden, latent_dim, out_params
    )


