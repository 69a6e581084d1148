"""Training objectives: functions of the model's parts, not model subclasses.

An objective is called as ``objective(model, x, epoch=e)`` (and ``y=labels`` for a
model conditioned on labels) and returns an :class:`ObjectiveResult` whose ``loss``
is minimised (a scalar, mean over the batch) and whose per-example terms ``elbo``,
``reconstruction`` and ``kl`` are (B,) tensors in nats.

The choice between an analytic KL and a Monte Carlo estimate is made in one
place, :func:`kl_term`, and every objective and evaluation uses it.

Built in: ``elbo`` (β, KL warm-up, free bits) and ``iwae`` (k importance samples,
with the plain, STL or DReG gradient estimator for the inference network); the
disentangling objectives ``betatc`` (β-TCVAE), ``dip`` (DIP-VAE I and II), ``capacity``
(an annealed KL capacity) and ``factorvae`` (a discriminator trained beside the model,
through the objective's auxiliary modules).
"""

from __future__ import annotations

from varfam.families.base import log_prob_module, stop_gradient_log_prob
from varfam.objectives.base import ESTIMATORS, Objective, kl_per_dimension, kl_term
from varfam.objectives.betatc import BetaTC
from varfam.objectives.capacity import Capacity
from varfam.objectives.dip import Dip
from varfam.objectives.elbo import Elbo
from varfam.objectives.factorvae import FactorVae
from varfam.objectives.iwae import Iwae
from varfam.objectives.terms import ObjectiveResult, Terms

__all__ = [
    "ObjectiveResult",
    "Objective",
    "Terms",
    "Elbo",
    "Iwae",
    "BetaTC",
    "Dip",
    "Capacity",
    "FactorVae",
    "kl_term",
    "kl_per_dimension",
    "stop_gradient_log_prob",
    "log_prob_module",
    "ESTIMATORS",
]
