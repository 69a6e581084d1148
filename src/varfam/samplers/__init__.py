"""Samplers: what draws z after training (the prior, a GMM, a flow, a second VAE).

Each is a :class:`~varfam.samplers.base.Sampler` registered by name in
:data:`SAMPLERS` (``varfam list``), fitted on the encoder's latents of the training
set and kept in the run folder (``RUN/samplers/NAME.safetensors`` + ``NAME.json``).
"""

from __future__ import annotations

# import order = registration order = the order `varfam list` shows
# isort: off
from . import prior, gmm, flow, two_stage  # noqa: F401  (register the built-in samplers)
# isort: on
from .base import SAMPLERS, Sampler, encoder_latents, model_fingerprint
from .files import fitted_sampler, load_sampler, run_sampler, sampler_paths
from .flow import FlowSampler
from .gmm import GaussianMixtureSampler
from .prior import PriorSampler
from .two_stage import TwoStageSampler

__all__ = [
    "SAMPLERS",
    "Sampler",
    "PriorSampler",
    "GaussianMixtureSampler",
    "FlowSampler",
    "TwoStageSampler",
    "encoder_latents",
    "fitted_sampler",
    "load_sampler",
    "run_sampler",
    "model_fingerprint",
    "sampler_paths",
]
