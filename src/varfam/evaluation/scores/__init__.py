"""Anomaly and out-of-distribution scores over a trained model: one number per input row.

Higher means more anomalous. Each method is registered in
:data:`varfam.registry.SCORES` and called through :func:`score`:

- ``nll``: ``-log p(x)``, importance-sampled (Burda et al. 2016);
- ``elbo``: ``-ELBO``;
- ``recon``: ``-E_q[log p(x|z)]``, the reconstruction term (as reconstruction detectors);
- ``ratio``: ``-log p(x)`` minus a background model's (Ren et al. 2019; a local model);
- ``complexity``: ``-log p(x)`` minus the PNG code length (Serrà et al. 2020);
- ``regret``: the ELBO gain from fine-tuning each input's encoding (Xiao et al. 2020).

>>> import torch, varfam
>>> from varfam.evaluation.scores import score
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> score(model, torch.rand(5, 1, 8, 8).round(), "elbo").shape
torch.Size([5])
"""

from __future__ import annotations

from varfam.evaluation.scores.base import (
    Score,
    check_contamination,
    content_order,
    flags,
    score,
    threshold_for,
)
from varfam.evaluation.scores.complexity import InputComplexity, code_length
from varfam.evaluation.scores.elbo import NegativeElbo
from varfam.evaluation.scores.nll import NegativeLogLikelihood, log_likelihood
from varfam.evaluation.scores.ratio import LikelihoodRatio, fit_background, perturb
from varfam.evaluation.scores.recon import NegativeReconstruction
from varfam.evaluation.scores.regret import LikelihoodRegret, likelihood_regret

__all__ = [
    "score",
    "Score",
    "content_order",
    "check_contamination",
    "threshold_for",
    "flags",
    "NegativeLogLikelihood",
    "NegativeElbo",
    "NegativeReconstruction",
    "LikelihoodRatio",
    "InputComplexity",
    "LikelihoodRegret",
    "log_likelihood",
    "fit_background",
    "perturb",
    "code_length",
    "likelihood_regret",
]
