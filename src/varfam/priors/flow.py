"""A learned flow prior: a masked autoregressive flow on top of N(0, I).

p(z) is the distribution of ``z = f(ε)``, ``ε ~ N(0, I_D)``, where ``f`` is a stack
of ``flow_steps`` affine autoregressive transforms (MAF: Papamakarios, Pavlakou &
Murray 2017, "Masked Autoregressive Flow for Density Estimation"), trained jointly
with the VAE, as in the flow priors of Chen et al. 2017, "Variational Lossy
Autoencoder". The transforms come from ``zuko`` (``zuko.flows.MAF``); the
distribution zuko returns has ``log_prob`` and ``rsample`` with our shapes.

MAF evaluates ``log p(z)`` — what training needs — in one pass through each
transform; sampling inverts the autoregression, D passes per transform, which
only matters when generating pictures. Consecutive transforms reverse the
order of the coordinates.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from torch.distributions import Distribution

from varfam.priors.base import Encode, Prior, positive_int
from varfam.registry import PRIORS

__all__ = ["FlowPrior"]


def _zuko_flows() -> ModuleType:
    """``zuko.flows``, imported on first use without the global change zuko makes.

    Importing zuko sets ``Distribution._validate_args = False`` and
    ``Distribution.arg_constraints = {}`` for every torch distribution in the process;
    both are put back as they were, so building a flow prior leaves the user's torch
    settings alone. zuko's own distributions that relied on the global empty
    ``arg_constraints`` get it as a class attribute of their own instead.
    """
    saved = {name: Distribution.__dict__[name] for name in ("_validate_args", "arg_constraints")}
    try:
        flows = importlib.import_module("zuko.flows")
        zuko_distributions = importlib.import_module("zuko.distributions")
    finally:
        for name, value in saved.items():
            setattr(Distribution, name, value)
    for value in vars(zuko_distributions).values():
        if (isinstance(value, type) and issubclass(value, Distribution)
                and value.__module__.startswith("zuko")
                and _inherits_torch_arg_constraints(value)):
            value.arg_constraints = {}
    return flows


def _inherits_torch_arg_constraints(cls: type) -> bool:
    """Whether ``cls`` declares no ``arg_constraints`` of its own nor in a parent below torch's."""
    for klass in cls.__mro__:
        if "arg_constraints" in klass.__dict__:
            return klass is Distribution
    return True


@PRIORS.register(
    "flow",
    "learned masked autoregressive flow on N(0, I) (options flow_steps, default 4; hidden, "
    "default 64)",
    "Papamakarios, Pavlakou & Murray 2017, Masked Autoregressive Flow for Density "
    "Estimation; Chen et al. 2017, Variational Lossy Autoencoder",
)
class FlowPrior(Prior):
    """p(z) = MAF with ``flow_steps`` affine transforms (MADE nets of two ``hidden``-wide layers).

    Shapes: ``log_prob`` of (..., D) → (...), nats; ``sample(s)`` → s + (D,).

    >>> import torch
    >>> p = FlowPrior(3, (1, 8, 8), flow_steps=2)()
    >>> p.log_prob(torch.zeros(4, 5, 3)).shape, p.sample((6,)).shape
    (torch.Size([4, 5]), torch.Size([6, 3]))
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: tuple[int, ...],
        *,
        flow_steps: int = 4,
        hidden: int = 64,
    ) -> None:
        super().__init__(latent_dim, data_shape)
        self.flow_steps = positive_int("flow prior", "flow_steps", flow_steps)
        self.hidden = positive_int("flow prior", "hidden", hidden)
        self.flow = _zuko_flows().MAF(
            features=latent_dim, transforms=flow_steps, hidden_features=(hidden, hidden)
        )

    def forward(self, encode: Encode | None = None) -> Distribution:
        return self.flow()
