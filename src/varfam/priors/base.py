"""The prior contract and the textbook prior N(0, I)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from varfam.errors import VarfamError
from varfam.parts import TrainingHooks
from varfam.parts.normal import DiagonalNormal
from varfam.registry import PRIORS

__all__ = ["Prior", "StandardNormal", "Encode", "positive_int"]

#: The model's encoder as a map x (N, *data_shape) → q(z|x) (batch (N,), event (D,)).
Encode = Callable[[Tensor], Distribution]


def positive_int(owner: str, name: str, value: object) -> int:
    """``value`` if it is a positive integer, else a one-line :class:`VarfamError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VarfamError(f"{owner}: option {name} must be a positive integer, got {value!r}")
    return value


class Prior(TrainingHooks, nn.Module):
    """p(z) over R^D (or the part of it a family lives on).

    Subclasses implement ``forward(encode)`` returning a Distribution with
    ``batch_shape == ()`` and ``event_shape == (D,)``. Parameters live in the
    module; the distribution is a short-lived value built on every call.
    """

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.data_shape = tuple(data_shape)

    def forward(self, encode: Encode | None = None) -> Distribution:  # pragma: no cover
        raise NotImplementedError

    def given_label(self, encode: Encode | None, y: Tensor) -> Distribution:
        """p(z|y) for class labels ``y`` (B,) int64 of a model conditioned on labels.

        A prior that reads y returns batch_shape (B,); this default ignores y and
        returns p(z) itself (batch_shape ``()``), so every prior keeps its meaning.
        """
        return self(encode)


@PRIORS.register("standard", "standard normal N(0, I)", "Kingma & Welling 2014")
class StandardNormal(Prior):
    """p(z) = N(0, I_D).

    It has no parameters, so the distribution is built once and returned again on every
    call (the training loop asks for it every step): kept with the zero buffer it was
    built from, it is rebuilt when that buffer is another tensor or was written to (the
    module moved to another device or dtype, or copied), and built afresh, uncached,
    under ``torch.inference_mode`` (whose tensors autograd cannot save) and while
    ``torch.compile`` traces the call.

    >>> StandardNormal(3, (1, 8, 8))().log_prob(torch.zeros(5, 3)).shape
    torch.Size([5])
    """

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...]) -> None:
        super().__init__(latent_dim, data_shape)
        self.register_buffer("_zero", torch.zeros(latent_dim), persistent=False)
        #: (the ``_zero`` it was built from, that tensor's version, the distribution)
        self._built: tuple[Tensor, int, DiagonalNormal] | None = None

    def forward(self, encode: Encode | None = None) -> Distribution:
        zero, built = self._zero, self._built
        if torch.compiler.is_compiling():
            return DiagonalNormal.standard_normal(zero)
        if built is not None and built[0] is zero and built[1] == zero._version:
            return built[2]
        p = DiagonalNormal.standard_normal(zero)  # Independent(Normal(0, 1), 1)
        if not torch.is_inference_mode_enabled() and not zero.is_inference():
            self._built = (zero, zero._version, p)
        return p
