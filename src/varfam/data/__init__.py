"""Datasets: named ones (registered) and user files, all as float tensors in [0, 1]."""

from __future__ import annotations

from pathlib import Path

from ..errors import VarfamError
from ..registry import DATASETS
from . import named  # noqa: F401  (registers the named datasets)
from .base import Dataset, split

__all__ = ["Dataset", "split", "load_dataset"]


def load_dataset(
    spec: str,
    *,
    data_dir: str | None = None,
    image_size: int | None = None,
    key: str | None = None,
) -> Dataset:
    """Load a named dataset (``varfam list``) or a user path.

    ``spec`` is a registered name (``mnist5k``, ``digits``, ``fashion-mnist``, ``mnist``)
    or a path to a ``.npy``/``.npz`` file or a folder of images.
    """
    if spec in DATASETS:
        return DATASETS.get(spec)(data_dir=data_dir, image_size=image_size)
    path = Path(spec)
    if not path.exists():
        raise VarfamError(
            f"'{spec}' is neither a known dataset ({', '.join(DATASETS.names())}) "
            "nor an existing file or folder"
        )
    raise VarfamError(f"cannot read '{spec}': user files are not supported yet")
