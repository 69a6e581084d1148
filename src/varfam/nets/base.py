"""The layers the built-in architectures share: a stack of hidden layers and a way to
run one."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["Stack", "linear_relu", "through"]

#: Builds the hidden layers for a list of widths [in, h1, h2, ...].
Stack = Callable[[list[int]], nn.Sequential]


def linear_relu(sizes: list[int]) -> nn.Sequential:
    """Linear+ReLU layers for the widths ``sizes`` [in, h1, h2, ...]: the default :data:`Stack`."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


def through(layers: nn.Sequential, x: Tensor) -> Tensor:
    """``layers(x)``, calling each layer (and its hooks) but not the container itself: one
    module call fewer per network and step (a hook on the ``nn.Sequential`` is not called)."""
    for layer in layers:
        x = layer(x)
    return x
