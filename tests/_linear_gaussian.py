"""Networks of the linear-Gaussian test model, p(x|z) = N(W z + b, σ² I), shared by the
objective and evaluation tests: the encoder passes x through, the decoder is W z + b."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Identity(nn.Module):
    """The encoder: features h = x, ``feature_dim`` = dim."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.feature_dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x


class LinearDecoder(nn.Module):
    """z (N, D) → loc (N, 1, X) = W z + b, in the dtype of ``w``."""

    def __init__(self, w: Tensor, b: Tensor) -> None:
        super().__init__()
        self.linear = nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype)
        with torch.no_grad():
            self.linear.weight.copy_(w)
            self.linear.bias.copy_(b)

    def forward(self, z: Tensor) -> Tensor:
        return self.linear(z).unsqueeze(1)
