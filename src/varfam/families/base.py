"""The contract every variational family meets.

A family is an ``nn.Module`` that owns the last layer(s) of the encoder: it maps
the encoder's feature vector ``h`` of shape ``(B, F)`` to ``q(z|x)``, a
``torch.distributions.Distribution`` with ``batch_shape == (B,)`` and
``event_shape == (D,)`` that supports ``rsample()`` and ``log_prob()``.

Owning the heads (rather than receiving a flat parameter vector) lets flows and
other conditional families read the context ``h`` directly, as IAF and Sylvester
flows need, while the textbook family is still exactly ``fc21``/``fc22`` of the
classic PyTorch example.

Options of a family (flow steps, rank, components, temperature) are keyword-only
constructor arguments, so the registry can check and record them.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.distributions import Distribution

from ..objectives import log_prob_module

__all__ = ["Family"]


class Family(nn.Module):
    """Amortized q(z|x): encoder features ``h`` (B, F) → Distribution over z (event (D,)).

    Subclasses set ``default_prior`` when N(0, I) is not the natural prior (the
    sphere for vMF, a categorical for relaxed discrete latents) and
    ``latent_support`` when z does not live on R^D.
    """

    default_prior: str = "standard"
    #: Where z lives, and the base measure ``log_prob`` is a density against:
    #: ``"real"`` (Lebesgue on R^D), ``"sphere"`` (surface measure on the unit
    #: sphere S^{D-1}), ``"simplex"`` (Lebesgue on the first D-1 coordinates of the
    #: probability simplex, torch's RelaxedOneHotCategorical convention) or
    #: ``"unit-cube"`` (Lebesgue on (0, 1)^D). The contract tests integrate
    #: densities over this support.
    latent_support: str = "real"

    def __init__(self, feature_dim: int, latent_dim: int) -> None:
        super().__init__()
        if latent_dim < 1:
            raise ValueError("latent_dim must be at least 1")
        self.feature_dim = feature_dim
        self.latent_dim = latent_dim
        log_prob_module(self)  # the stop-gradient scorer of STL/DReG, made outside any trace

    def forward(self, h: Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def location(self, h: Tensor) -> Tensor:
        """A point summary of q(z|x), shape (B, D): the mean where it exists.

        Used for latent maps, encodings and active units. Families whose
        distribution has no closed-form mean override this.
        """
        return self(h).mean
