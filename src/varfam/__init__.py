"""varfam: variational autoencoders whose variational families are first-class.

>>> import varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(32,), family="diagonal")
>>> data = varfam.load_dataset("digits")
>>> result = varfam.train(model, data.limit(200), epochs=1)
>>> round(result.history[-1]["test_elbo"]) < 0
True

The names below are imported on first use (PEP 562), so ``import varfam`` and
``varfam --help`` do not import torch; ``import varfam.model`` etc. work as ever.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from ._version import __version__

#: public name → (module, attribute)
_EXPORTS = {
    "VAE": ("model", "VAE"),
    "ModelConfig": ("config", "ModelConfig"),
    "TrainConfig": ("config", "TrainConfig"),
    "RunConfig": ("config", "RunConfig"),
    "Dataset": ("data", "Dataset"),
    "load_dataset": ("data", "load_dataset"),
    "train": ("train", "train"),
    "TrainResult": ("train", "TrainResult"),
    "TrainState": ("train", "TrainState"),
    "Callback": ("callbacks", "Callback"),
    "TrainingRun": ("callbacks", "TrainingRun"),
    "load": ("checkpoint", "load_model"),
    "save": ("checkpoint", "save_model"),
    "evaluate_elbo": ("evaluate", "evaluate_elbo"),
    "evaluate": ("evaluate", "evaluate"),
    "VarfamError": ("errors", "VarfamError"),
    "ALL_REGISTRIES": ("registry", "ALL_REGISTRIES"),
    "load_table": ("data", "load_table"),
    "Table": ("data", "Table"),
    "TableDataset": ("data", "TableDataset"),
    "impute": ("impute", "impute"),
    "sample_table": ("impute", "sample_table"),
    "imputation_errors": ("impute", "imputation_errors"),
}
__all__ = [
    "VAE", "ModelConfig", "TrainConfig", "RunConfig", "Dataset", "load_dataset", "train",
    "TrainResult", "TrainState", "Callback", "TrainingRun", "load", "save", "evaluate_elbo",
    "evaluate", "VarfamError", "ALL_REGISTRIES", "load_table", "Table", "TableDataset",
    "impute", "sample_table", "imputation_errors", "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
    else:  # a submodule, e.g. varfam.families after a bare `import varfam`
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":  # the submodule exists; something it needs not
                raise
            raise AttributeError(f"module 'varfam' has no attribute '{name}'") from None
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """``varfam.train``, ``varfam.evaluate`` and ``varfam.impute`` are functions, as in an
    eager ``__init__``, though submodules share their names: the import system's recording
    of the submodule on the package is ignored for them (``import varfam.train`` works)."""

    def _export(name: str) -> property:  # type: ignore[misc]
        def get(self: types.ModuleType) -> Any:
            module, attr = _EXPORTS[name]
            return getattr(importlib.import_module(f".{module}", __name__), attr)

        return property(get, lambda self, value: None)

    train = _export("train")
    evaluate = _export("evaluate")
    impute = _export("impute")
    del _export


sys.modules[__name__].__class__ = _Package


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .callbacks import Callback, TrainingRun
    from .checkpoint import load_model as load
    from .checkpoint import save_model as save
    from .config import ModelConfig, RunConfig, TrainConfig
    from .data import Dataset, Table, TableDataset, load_dataset, load_table
    from .errors import VarfamError
    from .evaluate import evaluate, evaluate_elbo
    from .impute import imputation_errors, impute, sample_table
    from .model import VAE
    from .registry import ALL_REGISTRIES
    from .train import TrainResult, TrainState, train
