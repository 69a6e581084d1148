"""The in-memory dataset every reader returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Dataset", "split"]


@dataclass
class Dataset:
    """Train and test images as float tensors in [0, 1], with labels where they exist.

    ``train``/``test``: (N, *data_shape) float32, images as (N, C, H, W), vectors as
    (N, D). ``train_labels``/``test_labels``: (N,) int64 or ``None``.
    """

    name: str
    train: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def is_binary(self) -> bool:
        """True when every value is exactly 0 or 1."""
        return bool(((self.train == 0) | (self.train == 1)).all())

    def limit(self, n: int | None) -> Dataset:
        """The first ``n`` training examples and ``max(n // 10, 1)`` test examples (for quick runs)."""
        if n is None:
            return self
        m = max(n // 10, 1)
        return Dataset(
            self.name,
            self.train[:n],
            self.test[:m],
            None if self.train_labels is None else self.train_labels[:n],
            None if self.test_labels is None else self.test_labels[:m],
        )


def split(
    x: Tensor, labels: Tensor | None, n_test: int, seed: int, name: str
) -> Dataset:
    """A fixed seeded shuffle of ``x`` into train and the last ``n_test`` as test."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=g)
    tr, te = perm[:-n_test], perm[-n_test:]
    return Dataset(
        name,
        x[tr].contiguous(),
        x[te].contiguous(),
        None if labels is None else labels[tr],
        None if labels is None else labels[te],
    )
