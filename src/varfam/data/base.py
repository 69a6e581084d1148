"""The in-memory dataset every reader returns, the fixed train/test split, and resizing.

>>> import torch
>>> ds = split(torch.rand(20, 1, 4, 4), None, n_test=2, seed=0, name="toy")
>>> ds.train.shape, ds.test.shape, ds.data_shape
(torch.Size([18, 1, 4, 4]), torch.Size([2, 1, 4, 4]), (1, 4, 4))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from varfam.config import DataConfig
from varfam.errors import VarfamError

__all__ = [
    "Dataset",
    "split",
    "split_indices",
    "held_out_count",
    "check_image_size",
    "resize_images",
    "one_line",
    "SPLIT_SEED",
    "TEST_FRACTION",
]

#: Seed of the fixed train/test split of every dataset that does not ship its own split.
SPLIT_SEED = 1234
#: Share of the examples that a user dataset without its own split keeps for testing.
TEST_FRACTION = 0.1


@dataclass
class Dataset:
    """Train and test examples as float32 tensors, with labels where they exist.

    ``train``/``test``: (N, *data_shape) float32; images as (N, C, H, W), vectors as
    (N, D). Values lie in [0, 1] for every named dataset, image folder and integer
    file; float files are kept as they are (finite), and the likelihood's
    ``check_data`` refuses what it cannot model. ``train_labels``/``test_labels``:
    (N,) int64 or ``None``. ``classes``: the name of each label value, where known.
    ``train_index``/``test_index``: (N,) int64, each example's position in the source
    (the row of a file, the place in a folder's sorted file list) where varfam made
    the split; ``None`` for data that comes with its own split.
    ``train_factors``/``test_factors``: (N, F) float32, the known generating factors of
    each example (dSprites' shape, scale, ...), or ``None``; ``factor_names``: the name
    of each of the F columns, where known. Factors whose rows do not match the
    examples raise :class:`VarfamError`.
    ``config``: the :class:`~varfam.config.DataConfig` that loads this data again (the
    source, the limits, the labels kept…), which a run records in its ``config.json``;
    ``None`` for data made in memory, which a run can't reload by itself.
    """

    name: str
    train: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    classes: tuple[str, ...] | None = None
    train_index: Tensor | None = None
    test_index: Tensor | None = None
    train_factors: Tensor | None = None
    test_factors: Tensor | None = None
    factor_names: tuple[str, ...] | None = None
    config: DataConfig | None = None

    def __post_init__(self) -> None:
        for part, x, f in (("train", self.train, self.train_factors),
                           ("test", self.test, self.test_factors)):
            if f is not None and (f.dim() != 2 or f.shape[0] != x.shape[0]):
                raise VarfamError(
                    f"the {part} factors of {self.name} have shape {tuple(f.shape)} but "
                    f"there are {x.shape[0]} {part} examples; give one row of factors "
                    "(N, F) per example"
                )
        f = self.train_factors if self.train_factors is not None else self.test_factors
        if self.factor_names is not None and f is not None and len(self.factor_names) != f.shape[1]:
            raise VarfamError(
                f"{self.name} has {f.shape[1]} factors but {len(self.factor_names)} factor "
                "names; give one name per factor column"
            )

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def is_binary(self) -> bool:
        """True when every value is exactly 0 or 1."""
        return bool(((self.train == 0) | (self.train == 1)).all())

    def limit(self, n: int | None, test: int | None = None) -> Dataset:
        """The first ``n`` training and ``test`` test examples (for quick runs).

        ``test`` defaults to ``max(n // 10, 1)`` when ``n`` is given, else all.
        """
        if n is None and test is None:
            return self
        m = test if test is not None else max(n // 10, 1) if n is not None else None

        def cut(t: Any, k: int | None) -> Any:  # a part left whole is not read (MappedRows)
            return t if t is None or k is None else t[:k]

        config = None if self.config is None else dataclasses.replace(
            self.config, limit=n, test_limit=test)
        return dataclasses.replace(
            self,
            train=cut(self.train, n),
            test=cut(self.test, m),
            train_labels=cut(self.train_labels, n),
            test_labels=cut(self.test_labels, m),
            train_index=cut(self.train_index, n),
            test_index=cut(self.test_index, m),
            train_factors=cut(self.train_factors, n),
            test_factors=cut(self.test_factors, m),
            config=config,
        )


def held_out_count(n: int) -> int:
    """How many of ``n`` examples a user dataset keeps for testing: 10 %, at least 1."""
    return max(1, int(n * TEST_FRACTION))


def split_indices(n: int, n_test: int, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (int64) of the train and test examples of a fixed seeded shuffle of ``n``.

    The last ``n_test`` positions of ``torch.randperm(n)`` under ``seed`` are the test set,
    so the split is the same on every machine for the same ``n`` and ``seed``.
    """
    if not 0 < n_test < n:
        raise VarfamError(f"a train/test split needs at least 2 examples, got {n}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return perm[:-n_test], perm[-n_test:]


def split(
    x: Tensor,
    labels: Tensor | None,
    n_test: int,
    seed: int,
    name: str,
    classes: tuple[str, ...] | None = None,
) -> Dataset:
    """A fixed seeded shuffle of ``x`` (N, ...) into train and the last ``n_test`` as test."""
    tr, te = split_indices(x.shape[0], n_test, seed)
    return Dataset(
        name,
        x[tr].contiguous(),
        x[te].contiguous(),
        None if labels is None else labels[tr],
        None if labels is None else labels[te],
        classes,
        tr,
        te,
    )


def check_image_size(image_size: object) -> int | None:
    """``image_size`` as a positive int (or ``None``); a :class:`VarfamError` otherwise."""
    if image_size is None:
        return None
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise VarfamError(
            f"--image-size must be a positive whole number of pixels, got {image_size!r}"
        )
    return image_size


def resize_images(x: Tensor, image_size: int | None, source: str) -> Tensor:
    """Resize images (N, C, H, W) to (N, C, S, S) with antialiased bilinear filtering.

    The filter weights are non-negative and sum to one, so values stay within the
    range of the input. ``image_size=None`` or a matching size returns ``x`` unchanged;
    vectors (N, D) cannot be resized and raise :class:`VarfamError`.
    """
    size = check_image_size(image_size)
    if size is None:
        return x
    if x.dim() != 4:
        raise VarfamError(
            f"--image-size applies to images, but {source} holds vectors of shape "
            f"{tuple(x.shape[1:])}; leave --image-size out"
        )
    if x.shape[-2:] == (size, size):
        return x
    if x.shape[0] == 0:
        return x.new_zeros(0, x.shape[1], size, size)
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def one_line(error: BaseException) -> str:
    """An exception's message squeezed onto one line (its type name if it has none)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__
