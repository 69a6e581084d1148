"""Fixed binarization of grey levels, and the seed each split is binarized with.

A run with ``binarize = "static"`` (or ``"dynamic"``) scores its test and validation
sets on one fixed Bernoulli draw of their grey levels. Every place that needs those
exact binary images (training, ``varfam eval``, pictures, benchmarks) derives the
seed from the run's seed with :func:`split_seed`, so they all see the same draw.

>>> import torch
>>> x = torch.full((2, 3), 0.5)
>>> bool((binarize_fixed(x, 7) == binarize_fixed(x, 7)).all())
True
>>> split_seed(10, "train"), split_seed(10, "test"), split_seed(10, "validation")
(10, 11, 12)
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["binarize_fixed", "split_seed", "Split"]

Split = Literal["train", "test", "validation"]

_OFFSETS: dict[str, int] = {"train": 0, "test": 1, "validation": 2}


def binarize_fixed(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Bernoulli-sample grey levels in [0, 1] once with a fixed seed; same shape and device."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.bernoulli(x.cpu(), generator=g).to(x.device)


def split_seed(seed: int, split: Split) -> int:
    """The seed of a split's fixed binarization: the run's seed plus 0, 1 or 2."""
    return seed + _OFFSETS[split]
