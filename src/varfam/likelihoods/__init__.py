"""Likelihoods p(x|z): turn the decoder's output into a Distribution over x.

The decoder emits ``params`` of shape ``(B, P, *data_shape)`` where
``P = likelihood.params_per_value``; ``forward(params)`` returns a distribution
with ``batch_shape == (B,)`` and ``event_shape == data_shape`` whose
``log_prob(x)`` is in nats per example and whose ``.mean`` is an image in the
data's range. ``check_data(x)`` refuses data outside the likelihood's support with
a one-line :class:`~varfam.errors.VarfamError`. ``discrete`` is True where
``log_prob`` is a probability mass (so bits per dimension make sense).

Built in: ``bernoulli``, ``continuous-bernoulli`` (``bernoulli.py``);
``gaussian``, ``laplace`` (``location_scale.py``); ``discretized-logistic``,
``categorical`` (``eight_bit.py``); ``autoregressive-bernoulli``
(``autoregressive.py``); ``mixed``, tables with missing cells (``mixed.py``);
``masked``, any of them scored on observed values only (``masked.py``).
Losses are computed from logits, never from ``sigmoid`` followed by BCE. Every
module of this package is imported here.

Two optional hooks serve likelihoods that read the data themselves (the
autoregressive one): the distribution may offer ``log_prob_tiled(x, lead,
observed)``, which :meth:`varfam.VAE.log_likelihood` prefers, so that work on x
alone is done once for k latents; and the likelihood may offer ``observe(x)``,
that work itself, which importance sampling computes once per block of images and
passes back for every sample. A part with ``set_progress(fraction)`` is told the
training schedule's progress at every epoch (see :mod:`varfam.train`).
"""

import importlib
import pkgutil

# import order = registration order = the order `varfam list` shows
# isort: off
from varfam.likelihoods.base import Likelihood, check_finite, check_unit_interval
from varfam.likelihoods.bernoulli import (
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    StableContinuousBernoulli,
)
from varfam.likelihoods.location_scale import GaussianLikelihood, LaplaceLikelihood
from varfam.likelihoods.eight_bit import (
    CategoricalLikelihood,
    DiscretizedLogisticLikelihood,
    DiscretizedLogisticMixture,
    EightBitCategorical,
    check_eight_bit,
)
from varfam.likelihoods.autoregressive import (
    AutoregressiveBernoulliLikelihood,
    LocalAutoregressiveBernoulli,
)
from varfam.likelihoods.mixed import MixedColumns, MixedLikelihood, OrderedLogistic
from varfam.likelihoods.masked import MaskedLikelihood, ObservedOnly
# isort: on

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "Likelihood",
    "check_unit_interval",
    "check_finite",
    "check_eight_bit",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "StableContinuousBernoulli",
    "GaussianLikelihood",
    "LaplaceLikelihood",
    "DiscretizedLogisticLikelihood",
    "DiscretizedLogisticMixture",
    "CategoricalLikelihood",
    "EightBitCategorical",
    "AutoregressiveBernoulliLikelihood",
    "LocalAutoregressiveBernoulli",
    "MixedLikelihood",
    "MixedColumns",
    "OrderedLogistic",
    "MaskedLikelihood",
    "ObservedOnly",
]
