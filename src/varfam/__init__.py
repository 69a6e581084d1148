"""varfam: variational autoencoders whose variational families are first-class.

>>> import varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(32,), family="diagonal")
>>> data = varfam.load_dataset("digits")
>>> result = varfam.train(model, data.limit(200), epochs=1)
>>> round(result.history[-1]["test_elbo"]) < 0
True
"""

from . import data, families, likelihoods, objectives, priors  # noqa: F401  (register parts)
from ._version import __version__  # noqa: F401  (varfam.__version__)
from .callbacks import Callback, TrainingRun
from .checkpoint import load_model as load
from .checkpoint import save_model as save
from .config import ModelConfig, RunConfig, TrainConfig
from .data import Dataset, load_dataset
from .errors import VarfamError
from .evaluate import evaluate, evaluate_elbo
from .model import VAE
from .registry import ALL_REGISTRIES
from .train import TrainResult, TrainState, train

__all__ = [
    "VAE",
    "ModelConfig",
    "TrainConfig",
    "RunConfig",
    "Dataset",
    "load_dataset",
    "train",
    "TrainResult",
    "TrainState",
    "Callback",
    "TrainingRun",
    "load",
    "save",
    "evaluate_elbo",
    "evaluate",
    "VarfamError",
    "ALL_REGISTRIES",
]

