"""Priors p(z): modules whose ``forward(encode)`` returns a Distribution over z.

Every prior is built as ``Prior(latent_dim, data_shape, **options)`` and its
``forward(encode)`` returns a distribution with ``batch_shape == ()`` and
``event_shape == (D,)``, with ``sample`` and ``log_prob`` (nats; ``z`` of shape
``(..., D)`` gives ``(...)``). ``encode`` is the model's ``x → q(z|x)`` map; only
priors defined through the encoder (the VampPrior) use it.

Built in: ``standard`` N(0, I), ``learned`` (diagonal Gaussian), ``mog`` (mixture of
Gaussians), ``vamp`` (VampPrior), ``flow`` (masked autoregressive flow) and
``hierarchical`` (two layers, any of these on the top one). Every
module of this package is imported here, so a new prior is one new file with a
``@PRIORS.register(...)`` class (or a class in a family module, for priors that
belong to one kind of latent space).
"""

import importlib
import pkgutil

# import order = registration order = the order `varfam list` shows
# isort: off
from varfam.priors.base import Encode, Prior, StandardNormal, positive_int
from varfam.priors.gaussian import GaussianMixturePrior, LearnedGaussian
from varfam.priors.vamp import VampMixture, VampPrior
from varfam.priors.flow import FlowPrior
# isort: on

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "Prior",
    "StandardNormal",
    "Encode",
    "LearnedGaussian",
    "GaussianMixturePrior",
    "VampPrior",
    "VampMixture",
    "FlowPrior",
    "positive_int",
]
