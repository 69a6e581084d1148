"""Measuring a trained model: bounds, importance-sampled log p(x), latent diagnostics.

:func:`evaluate` (``varfam.evaluate``) gathers the test ELBO, the importance-sampled
log-likelihood, active units and the rest in one call (:mod:`varfam.evaluation.bounds`);
:mod:`varfam.evaluation.classify` measures a labelled model's classifier.
"""

from __future__ import annotations

from varfam.evaluation.bounds import (
    ImportanceSampling,
    active_units,
    evaluate,
    evaluate_elbo,
    importance_sampled_log_likelihood,
    importance_sampling,
)
from varfam.evaluation.classify import accuracy, predict

__all__ = [
    "evaluate", "evaluate_elbo", "importance_sampling", "importance_sampled_log_likelihood",
    "ImportanceSampling", "active_units", "accuracy", "predict",
]
