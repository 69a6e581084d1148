"""Missing cells in any dataset: a mask file hides values by setting them to NaN.

A missing value is NaN in the data tensor itself, so the mask travels with every
batch for free. ``--mask FILE.npy`` holds booleans (or 0/1), **True (1) = missing**,
shaped like the data: one mask per example, ``(N, *data_shape)`` (or the file's own
layout, e.g. ``(N, H, W)`` for grey images), in the order of the source (the rows
of the file; for a dataset with its own split, the training examples then the
test examples), or one mask ``data_shape`` for every example. ``--mask nan``
instead reads NaN values of a ``.npy``/``.npz`` as missing (NaN is otherwise an
error in image data). The likelihood must then score observed values only: the
``mixed`` likelihood does for tables, and the image likelihoods do with the
option ``masked=true`` (which ``varfam train`` sets when a mask is given).

>>> import torch
>>> from varfam.data.base import split
>>> ds = split(torch.rand(5, 1, 2, 2), None, 1, 0, "toy")
>>> full = torch.zeros(5, 1, 2, 2, dtype=torch.bool); full[:, 0, 0, 0] = True
>>> hidden = hide(ds, full)
>>> bool(hidden.train[:, 0, 0, 0].isnan().all()), int(hidden.train.isnan().sum())
(True, 4)
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from varfam.data.base import Dataset, one_line
from varfam.errors import VarfamError

__all__ = ["apply_mask", "hide", "read_mask", "read_array_with_nan"]


def read_mask(path: str | Path) -> Tensor:
    """A mask file as a bool tensor (True = missing), as stored."""
    path = Path(path)
    try:
        m = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise VarfamError(f"mask file {path} does not exist") from None
    except Exception as e:  # numpy raises many types for corrupt files
        raise VarfamError(f"cannot read {path} as a .npy mask: {one_line(e)}") from None
    if not isinstance(m, np.ndarray):
        m.close()
        raise VarfamError(f"the mask {path} must be one .npy array of booleans, not a .npz")
    if m.dtype.kind not in "biuf" or (m.dtype.kind != "b" and not np.isin(m, (0, 1)).all()):
        raise VarfamError(
            f"the mask {path} must hold booleans or 0/1 (1 = missing), got dtype {m.dtype}"
        )
    return torch.from_numpy(m.astype(bool))


def hide(ds: Dataset, mask: Tensor, source: str = "the mask") -> Dataset:
    """``ds`` with NaN where ``mask`` (True = missing) says; see the module doc for shapes."""
    if not (isinstance(ds.train, Tensor) and isinstance(ds.test, Tensor)):
        raise VarfamError(f"{source}: masks need data that fits in memory")
    shape = tuple(ds.train.shape[1:])
    n = ds.train.shape[0] + ds.test.shape[0]
    per = math.prod(shape)
    if mask.numel() == per:
        m = mask.reshape(1, *shape)
        parts = (m.expand_as(ds.train), m.expand_as(ds.test))
    elif mask.numel() == n * per:
        m = mask.reshape(n, *shape)
        tr = getattr(ds, "train_index", None)
        te = getattr(ds, "test_index", None)
        if tr is None or te is None:  # a dataset with its own split: train rows, then test
            parts = (m[: ds.train.shape[0]], m[ds.train.shape[0]:])
        else:
            parts = (m[tr], m[te])
    else:
        raise VarfamError(
            f"{source} has shape {tuple(mask.shape)}, which fits neither one mask per example "
            f"({n} × {shape}) nor one mask {shape} for all"
        )
    train = ds.train.masked_fill(parts[0], math.nan)
    test = ds.test.masked_fill(parts[1], math.nan)
    return dataclasses.replace(ds, train=train, test=test)


def apply_mask(ds: Dataset, path: str | Path) -> Dataset:
    """``ds`` with the cells of the mask file ``path`` hidden (NaN)."""
    return hide(ds, read_mask(path), f"the mask {path}")


def read_array_with_nan(path: str | Path, *, key: str | None = None,
                        image_size: int | None = None) -> Dataset:
    """A ``.npy``/``.npz`` of images whose NaN values are missing pixels (``--mask nan``)."""
    from varfam.data.arrays import LABEL_KEYS, from_array

    path = Path(path)
    if image_size is not None:
        raise VarfamError("--image-size cannot resize images with missing pixels; leave it out")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy and zipfile raise many types for corrupt files
        raise VarfamError(f"cannot read {path} as a NumPy .npy/.npz file: {one_line(e)}") from None
    labels = None
    if not isinstance(loaded, np.ndarray):
        with loaded:
            names = [k for k in loaded.files if k not in LABEL_KEYS]
            name = key or (names[0] if len(names) == 1 else None)
            if name is None or name not in loaded.files:
                raise VarfamError(f"{path} holds several arrays; choose one with --key NAME")
            label = next((k for k in LABEL_KEYS if k in loaded.files), None)
            labels = None if label is None else loaded[label]
            loaded = loaded[name]
    if loaded.dtype.kind != "f":
        raise VarfamError(f"--mask nan needs float data with NaN for missing values; {path} "
                          f"has dtype {loaded.dtype}")
    nan = np.isnan(loaded)
    ds = from_array(np.where(nan, 0.0, loaded).astype(loaded.dtype), labels, path.stem, str(path))
    return hide(ds, torch.from_numpy(nan), f"the NaN values of {path}")
