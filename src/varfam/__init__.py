"""varfam: variational autoencoders whose variational families are first-class.

>>> import varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(32,), family="diagonal")
>>> data = varfam.load_dataset("digits")
>>> result = varfam.train(model, data.limit(200), epochs=1)
>>> round(result.history[-1]["test_elbo"]) < 0
True

The package's layout is its architecture: the parts (``families``, ``priors``,
``likelihoods``, ``objectives``, ``nets``), the model that wires them
(:mod:`varfam.model`), the data (``data``), and the subsystems that use a model
(``training``, ``evaluation``, ``reporting``, ``tables``, ``runs``, ``sharing``,
``cli``). The names below are imported on first use (PEP 562), so ``import varfam``
and ``varfam --help`` do not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # the one place the version is written (pyproject.toml reads it)

#: public name → (module, attribute)
_EXPORTS = {
    "VAE": ("varfam.model", "VAE"),
    "ModelConfig": ("varfam.config", "ModelConfig"),
    "DataConfig": ("varfam.config", "DataConfig"),
    "TrainConfig": ("varfam.config", "TrainConfig"),
    "RunConfig": ("varfam.config", "RunConfig"),
    "Dataset": ("varfam.data", "Dataset"),
    "load_dataset": ("varfam.data", "load_dataset"),
    "load_data": ("varfam.data", "load_data"),
    "train": ("varfam.training", "train"),
    "train_from_config": ("varfam.training", "train_from_config"),
    "TrainResult": ("varfam.training", "TrainResult"),
    "TrainState": ("varfam.training", "TrainState"),
    "Callback": ("varfam.training", "Callback"),
    "TrainingRun": ("varfam.training", "TrainingRun"),
    "load": ("varfam.runs", "load_model"),
    "save": ("varfam.runs", "save_model"),
    "evaluate_elbo": ("varfam.evaluation", "evaluate_elbo"),
    "evaluate": ("varfam.evaluation", "evaluate"),
    "score": ("varfam.evaluation.scores", "score"),
    "VarfamError": ("varfam.errors", "VarfamError"),
    "ALL_REGISTRIES": ("varfam.registry", "ALL_REGISTRIES"),
    "load_table": ("varfam.data", "load_table"),
    "Table": ("varfam.data", "Table"),
    "TableDataset": ("varfam.data", "TableDataset"),
    "impute": ("varfam.tables", "impute"),
    "sample_table": ("varfam.tables", "sample_table"),
    "imputation_errors": ("varfam.tables", "imputation_errors"),
    "tune": ("varfam.integrations.tune", "tune"),
}
__all__ = [
    "VAE", "ModelConfig", "DataConfig", "TrainConfig", "RunConfig", "Dataset", "load_dataset",
    "load_data", "train", "train_from_config", "TrainResult", "TrainState", "Callback",
    "TrainingRun", "load", "save", "evaluate_elbo", "evaluate", "VarfamError",
    "ALL_REGISTRIES", "load_table", "Table", "TableDataset", "impute", "sample_table",
    "imputation_errors", "score", "tune", "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
    else:  # a subpackage, e.g. varfam.families after a bare `import varfam`
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":  # the module exists; something it needs not
                raise
            raise AttributeError(f"module 'varfam' has no attribute '{name}'") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from varfam.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from varfam.data import Dataset, Table, TableDataset, load_data, load_dataset, load_table
    from varfam.errors import VarfamError
    from varfam.evaluation import evaluate, evaluate_elbo
    from varfam.evaluation.scores import score
    from varfam.integrations.tune import tune
    from varfam.model import VAE
    from varfam.registry import ALL_REGISTRIES
    from varfam.runs import load_model as load
    from varfam.runs import save_model as save
    from varfam.tables import imputation_errors, impute, sample_table
    from varfam.training import (
        Callback,
        TrainingRun,
        TrainResult,
        TrainState,
        train,
        train_from_config,
    )
