"""The ``tabular`` architecture: an MLP whose encoder sees a table's values *and* its mask.

Tables arrive in model units (:mod:`varfam.data.columns`), shape (B, C), NaN
where a cell is missing. The encoder's input is, per column,

- a numeric column: ``asinh(x)`` (≈ x for standardized values, ≈ log 2x for
  large counts), 0 where missing;
- a categorical or ordinal column with K levels (option ``levels``): the one-hot
  code of its level, all zeros where missing;

followed by the observed mask (1 observed, 0 missing) of every column, as in
MIWAE (Mattei & Frellsen 2019) and HI-VAE (Nazabal et al. 2020). The decoder
is :class:`~varfam.nets.MLPDecoder`, unchanged. Missing cells never reach a
weight as NaN, so any family, prior and objective works on incomplete tables.

>>> enc, dec = tabular((3,), (16,), 2, 4, levels=[0, 3, 0])
>>> x = torch.tensor([[0.5, 2.0, float("nan")]])
>>> [round(v, 3) for v in enc.features(x)[0].tolist()]  # asinh x0, x2 | one-hot x1 | mask
[0.481, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0]
>>> enc(x).shape, dec(torch.zeros(1, 2)).shape
(torch.Size([1, 16]), torch.Size([1, 4, 3]))
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varfam.errors import VarfamError
from varfam.nets.base import linear_relu
from varfam.nets.dense import MLPDecoder
from varfam.registry import ARCHITECTURES

__all__ = ["TabularEncoder", "tabular"]


class TabularEncoder(nn.Module):
    """[asinh values | one-hot levels | observed mask] → Linear+ReLU layers of ``hidden``.

    ``levels``: one entry per column, 0 for a numeric column, K ≥ 1 for a column of
    level codes 0..K-1 (default: every column numeric). Input x (B, C) with NaN for
    missing cells; output features (B, hidden[-1]).
    """

    def __init__(self, data_shape: tuple[int, ...], hidden: tuple[int, ...],
                 levels: Sequence[int] | None = None) -> None:
        super().__init__()
        if len(data_shape) != 1:
            raise VarfamError(
                f"the tabular architecture takes tables of shape (C,), got {tuple(data_shape)}; "
                "use --arch mlp or conv for images"
            )
        if not hidden:
            raise VarfamError("the tabular architecture needs a hidden width (--hidden 128)")
        n = data_shape[0]
        levels = [0] * n if levels is None else [int(k) for k in levels]
        if len(levels) != n or any(k < 0 for k in levels):
            raise VarfamError(
                f"tabular architecture: option levels must give 0 (a number) or K >= 1 (level "
                f"codes) for each of the {n} columns, got {levels}"
            )
        numeric = [i for i, k in enumerate(levels) if k == 0]
        self.register_buffer("numeric", torch.tensor(numeric, dtype=torch.long), persistent=False)
        self.coded: list[tuple[str, int]] = []
        for k in sorted({k for k in levels if k}):
            name = f"coded{k}"
            idx = [i for i, kk in enumerate(levels) if kk == k]
            self.register_buffer(name, torch.tensor(idx, dtype=torch.long), persistent=False)
            self.coded.append((name, k))
        width = len(numeric) + sum(k * len(getattr(self, b)) for b, k in self.coded) + n
        self.net = linear_relu([width, *hidden])
        self.feature_dim = hidden[-1]

    def features(self, x: Tensor) -> Tensor:
        """The network's input (B, F) for a table x (B, C) with NaN where missing."""
        observed = ~torch.isnan(x)
        filled = torch.where(observed, x, torch.zeros_like(x))
        parts = [torch.asinh(filled.index_select(1, self.numeric))]
        for name, k in self.coded:
            idx = getattr(self, name)
            codes = filled.index_select(1, idx).long().clamp(0, k - 1)
            hot = F.one_hot(codes, k).to(x.dtype) * observed.index_select(1, idx).unsqueeze(-1)
            parts.append(hot.flatten(1))
        parts.append(observed.to(x.dtype))
        return torch.cat(parts, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.features(x))


@ARCHITECTURES.register(
    "tabular",
    "MLP for tables with missing cells: the encoder reads the values (one-hot levels, "
    "option levels) and the observed mask; the default for table data",
    "Mattei & Frellsen 2019, MIWAE; Nazabal et al. 2020, HI-VAE",
)
def tabular(
    data_shape: tuple[int, ...],
    hidden: tuple[int, ...],
    latent_dim: int,
    out_params: int,
    *,
    levels: Sequence[int] | None = None,
) -> tuple[nn.Module, nn.Module]:
    return TabularEncoder(data_shape, hidden, levels), MLPDecoder(
        data_shape, hidden, latent_dim, out_params
    )
