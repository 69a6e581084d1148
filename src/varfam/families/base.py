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

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from torch import Tensor, nn
from torch.distributions import Distribution
from torch.func import functional_call

from varfam.parts import TrainingHooks

__all__ = ["Family", "log_prob_module", "stop_gradient_log_prob"]


class Family(TrainingHooks, nn.Module):
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
    #: Options of ``default_prior`` that must match the family (a relaxed categorical's
    #: number of categories and temperature); the model merges them into the prior's.
    default_prior_options: Mapping[str, Any] = MappingProxyType({})

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


class _LogProbAt(nn.Module):
    """``family(h).log_prob(z)`` as one module call (see :func:`stop_gradient_log_prob`)."""

    def __init__(self, family: nn.Module) -> None:
        super().__init__()
        self.family = family

    def forward(self, h: Tensor, z: Tensor) -> Tensor:
        return self.family(h).log_prob(z)


def stop_gradient_log_prob(family: nn.Module, h: Tensor, z: Tensor) -> Tensor:
    """log q(z|x) with every parameter of ``family`` and the features ``h`` detached.

    The value is ``family(h).log_prob(z)``, shape ``z.shape[:-1]``, in nats, but the
    gradient reaches only ``z``, not the inference network's parameters: the
    "stop-gradient" density of STL and DReG. Works for any family through
    ``torch.func.functional_call``. The parameters are swapped for the detached ones
    during the whole of building q *and* scoring z, because families whose
    distribution calls a network lazily (IAF, Real NVP, the hierarchical family) read
    their parameters inside ``log_prob``, after ``forward`` has returned.
    """
    params = {f"family.{name}": p.detach() for name, p in family.named_parameters()}
    return functional_call(log_prob_module(family), params, (h.detach(), z))


def log_prob_module(family: nn.Module) -> nn.Module:
    """The module computing ``family(h).log_prob(z)``, made once per family and kept on it.

    :class:`~varfam.families.base.Family` makes it when it is built, so a compiled
    training step never creates a module (which would break its graph). It is kept
    outside the module tree: not a submodule, not in ``state_dict``.
    """
    wrapper = family.__dict__.get("_log_prob_at")
    if wrapper is None:
        wrapper = _LogProbAt(family)
        object.__setattr__(family, "_log_prob_at", wrapper)
    return wrapper
