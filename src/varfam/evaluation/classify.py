"""Measuring the classifier q(y|x) of a model trained with labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["predict", "accuracy"]


@torch.inference_mode()
def predict(model: VAE, x: Tensor, batch_size: int = 1000) -> Tensor:
    """The most probable class under q(y|x) for every example of ``x``: int64 (N,) on CPU."""
    with model.evaluating():
        out = [
            model.classify(x[i : i + batch_size].to(model.device, torch.float32)).logits
            .argmax(-1).cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(model: VAE, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """The share of examples of ``x`` whose most probable class under q(y|x) is ``y``."""
    return float((predict(model, x, batch_size) == y.cpu()).double().mean())
