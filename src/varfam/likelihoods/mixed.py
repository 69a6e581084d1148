"""The ``mixed`` likelihood: one factor per column of a table, summed over the observed cells.

Data are tables in model units (see :mod:`varfam.data.columns`), shape (B, C),
with NaN where a cell is missing. Each column type has its own factor:

============  ================================================  =====================
type          factor (in model units)                           decoder outputs
============  ================================================  =====================
real          Normal(loc, scale), scale learned per row         2 (loc, raw scale)
positive      Normal of the standardized log: a log-normal      2
count         Poisson, log rate relative to the column's mean   1 (log rate)
count-nb      negative binomial (mean, dispersion)              2 (log mean, raw r)
categorical   Categorical(softmax(logits))                      K (logits)
ordinal       cumulative logit with ordered thresholds          K (location, K-1 gaps)
============  ================================================  =====================

The decoder emits ``(B, P, C)`` with ``P = params_per_value``, the largest count
above over the columns; column c reads the first ``P_c`` entries of its slice
(the rest are unused). This keeps the decoder contract of every architecture
(``out_params × prod(data_shape)``) unchanged.

Missing cells: ``log_prob`` scores observed cells only. A missing cell is first
filled with a value inside the factor's support, scored, and the score is then
replaced by 0 with ``torch.where``: the masked branch never computes on NaN, so
no NaN value or NaN gradient can leak from it (``NaN * 0`` would). This is the
observed-data likelihood ``p(x_obs | z)`` of MIWAE (Mattei & Frellsen 2019,
"MIWAE: Deep Generative Modelling and Imputation of Incomplete Data Sets") and
HI-VAE (Nazabal, Olmos, Ghahramani & Valera 2020, "Handling Incomplete
Heterogeneous Data using VAEs"), whose ELBO or IWAE bound the existing
objectives then compute unchanged.

The ordinal factor is HI-VAE's: ``P(x ≤ j | z) = σ(θ_j - η)`` for ``j < K-1``,
with thresholds ``θ = cumsum(softplus(raw) + gap)`` strictly increasing. Its
masses are computed as ``log(σ(a) - σ(b)) = log σ(a) + log σ(-b) + log(1 - e^{b-a})``,
exact and finite for every ``a > b`` (:func:`cumulative_logit_log_probs`).

>>> lik = MixedLikelihood((3,), columns=["real", {"type": "categorical", "levels": 4}, "count"])
>>> px = lik(torch.zeros(2, lik.params_per_value, 3))
>>> x = torch.tensor([[0.5, 2.0, 3.0], [float("nan"), 1.0, float("nan")]])
>>> px.log_prob(x).shape, bool(px.log_prob(x).isfinite().all())
(torch.Size([2]), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import (
    Categorical,
    Distribution,
    NegativeBinomial,
    Normal,
    Poisson,
    constraints,
)

from varfam.data.columns import Column, parse_columns
from varfam.errors import VarfamError
from varfam.likelihoods.base import Likelihood
from varfam.registry import LIKELIHOODS

__all__ = [
    "MixedLikelihood",
    "MixedColumns",
    "Factor",
    "OrderedLogistic",
    "LogRatePoisson",
    "cumulative_logit_log_probs",
    "ordered_thresholds",
    "params_per_column",
]

#: How the scale of real and positive columns is learned: per row from the decoder, or
#: one per column.
SCALES = ("row", "column")
#: softplus(_ONE) = 1: an untrained decoder (raw ≈ 0) starts at scale 1 (standardized data).
_ONE = math.log(math.e - 1.0)
#: Largest log rate / log mean of a count factor (e^30 ≈ 1e13), so exp never overflows.
_MAX_LOG_RATE = 30.0
#: Smallest gap between ordinal thresholds, so every level keeps a finite log-mass.
_GAP = 1e-3
#: Smallest negative-binomial total count r (the dispersion's floor).
_MIN_R = 1e-3


def params_per_column(column: Column) -> int:
    """Decoder outputs one column needs (see the module table)."""
    if column.type in ("categorical", "ordinal"):
        return column.n_levels
    return 1 if column.type == "count" else 2


# ---------------------------------------------------------------- factors of ours
def ordered_thresholds(raw: Tensor, gap: float = _GAP) -> Tensor:
    """Strictly increasing thresholds ``cumsum(softplus(raw) + gap)`` along the last dim."""
    return torch.cumsum(F.softplus(raw) + gap, dim=-1)


def cumulative_logit_log_probs(location: Tensor, thresholds: Tensor) -> Tensor:
    """log P(x = j), j = 0..K-1, of the cumulative-logit model ``P(x ≤ j) = σ(θ_j - η)``.

    ``location`` η: shape (...); ``thresholds`` θ: (..., K-1), strictly increasing.
    Returns (..., K) log-masses (nats) that sum to one in probability:
    ``log(σ(a_j) - σ(a_{j-1}))`` with ``a_j = θ_j - η``, ``a_{-1} = -∞``, ``a_{K-1} = +∞``,
    written as ``log σ(a_j) + log σ(-a_{j-1}) + log(-expm1(a_{j-1} - a_j))``.
    """
    a = thresholds - location.unsqueeze(-1)
    inf = torch.full_like(a[..., :1], math.inf)
    upper = torch.cat([a, inf], dim=-1)
    lower = torch.cat([-inf, a], dim=-1)
    return F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(lower - upper))


class OrderedLogistic(Categorical):
    """The cumulative-logit (ordered logistic) distribution over levels 0..K-1.

    ``P(x ≤ j) = σ(θ_j - η)``; a :class:`~torch.distributions.Categorical` whose
    logits are :func:`cumulative_logit_log_probs`, so sampling, ``log_prob`` and
    ``probs`` are torch's. ``location``: batch shape; ``thresholds``: batch + (K-1,).

    >>> d = OrderedLogistic(torch.tensor(0.0), torch.tensor([-1.0, 1.0]))
    >>> [round(p, 4) for p in d.probs.tolist()]
    [0.2689, 0.4621, 0.2689]
    """

    def __init__(self, location: Tensor, thresholds: Tensor,
                 validate_args: bool | None = False) -> None:
        self.location, self.thresholds = location, thresholds
        super().__init__(logits=cumulative_logit_log_probs(location, thresholds),
                         validate_args=validate_args)

    @property
    def median(self) -> Tensor:
        """The smallest level j with ``P(x ≤ j) ≥ 1/2`` (minimizes the expected |error|)."""
        return median_level(self.probs)


def median_level(probs: Tensor) -> Tensor:
    """The median level of probabilities (..., K) over ordered levels: (...) int64."""
    cdf = probs.cumsum(-1)
    return (cdf < 0.5).sum(-1).clamp_max(probs.shape[-1] - 1)


class LogRatePoisson(Poisson):
    """torch's Poisson parameterized by its log rate: ``log_prob = x·log λ - λ - log x!``.

    Exact for every log rate (no ``log(exp(·))`` round trip, which underflows).
    """

    def __init__(self, log_rate: Tensor, validate_args: bool | None = False) -> None:
        self.log_rate = log_rate
        super().__init__(rate=log_rate.exp(), validate_args=validate_args)

    def log_prob(self, value: Tensor) -> Tensor:
        return value * self.log_rate - self.rate - torch.lgamma(value + 1)


# ---------------------------------------------------------------- the product
@dataclass
class Factor:
    """The factor of a group of columns of one type: ``dist`` has batch shape (B, n)."""

    kind: str
    index: Tensor  # (n,) int64: the columns of this group
    dist: Distribution


class MixedColumns(Distribution):
    """p(x | z) of a table: independent factors per column, scored on observed cells.

    ``batch_shape`` (B,), ``event_shape`` (C,). ``log_prob(x)`` takes x (..., B, C)
    in model units with NaN for missing cells and returns (..., B) nats, the sum
    over the observed cells only. ``mean`` is a point value per column: the mean
    for real, positive (in model units) and count columns, the most probable level
    for categorical columns and the median level for ordinal ones. ``factors``
    exposes the per-type distributions (for imputation).
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, factors: list[Factor], n_columns: int, batch: int) -> None:
        self.factors = factors
        super().__init__(torch.Size((batch,)), torch.Size((n_columns,)), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        total: Tensor | None = None
        for f in self.factors:
            v = value.index_select(-1, f.index)
            observed = ~torch.isnan(v)
            filled = torch.where(observed, v, torch.zeros_like(v))  # 0 lies in every support
            lp = f.dist.log_prob(filled)
            lp = torch.where(observed, lp, torch.zeros_like(lp)).sum(-1)
            total = lp if total is None else total + lp
        assert total is not None
        return total

    def _scatter(self, parts: list[Tensor], lead: tuple[int, ...]) -> Tensor:
        """Per-factor values (*lead, B, n) → one tensor (*lead, B, C) in the factors' float."""
        dtype = next((p.dtype for p in parts if p.is_floating_point()), torch.float32)
        shape = (*lead, *self.batch_shape, *self.event_shape)
        out = torch.empty(shape, dtype=dtype, device=parts[0].device)
        for f, p in zip(self.factors, parts):
            out[..., f.index] = p.to(dtype)
        return out

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            parts = [f.dist.sample(torch.Size(sample_shape)) for f in self.factors]
            return self._scatter(parts, tuple(sample_shape))

    @property
    def mean(self) -> Tensor:
        parts = []
        for f in self.factors:
            if f.kind == "categorical":
                parts.append(f.dist.probs.argmax(-1))
            elif f.kind == "ordinal":
                parts.append(median_level(f.dist.probs))
            else:
                parts.append(f.dist.mean)
        return self._scatter(parts, ())


@dataclass(frozen=True)
class _Group:
    kind: str  # normal (real, positive), count, count-nb, categorical, ordinal
    levels: int  # K for categorical/ordinal, 0 otherwise
    buffer: str  # name of the index buffer
    offset: str | None = None  # name of the log-mean buffer of counts


@LIKELIHOODS.register(
    "mixed",
    "tables with mixed column types and missing cells (NaN): real, positive, count, "
    "count-nb, categorical, ordinal; option columns (set by table data)",
    "Mattei & Frellsen 2019, MIWAE; Nazabal, Olmos, Ghahramani & Valera 2020, HI-VAE",
)
class MixedLikelihood(Likelihood):
    """p(x|z) = prod over observed cells of one factor per column (see the module doc).

    Options: ``columns`` — a list with one entry per column: a type name or a
    :class:`~varfam.data.columns.Column` dict (``type``, ``levels`` for categorical
    and ordinal, ``loc`` the mean count for counts); default: every column
    ``real``. ``scale``: the Gaussian scale of real and positive columns, ``"row"``
    (default: from the decoder, per row and column) or ``"column"`` (one learned value
    per column). ``min_scale`` (default 0.25): its floor, in standard deviations of
    the column; it keeps a few columns from dominating the fit of small tables
    (measured in docs/results.md). Data shape (C,).
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        *,
        columns: list | None = None,
        scale: str = "row",
        min_scale: float = 0.25,
    ) -> None:
        super().__init__(data_shape)
        if len(self.data_shape) != 1:
            raise VarfamError(
                f"the mixed likelihood models tables of shape (C,), got data of shape "
                f"{self.data_shape}; use a table file (.csv, .parquet) or a 2-D array"
            )
        if isinstance(min_scale, bool) or not isinstance(min_scale, (int, float)) \
                or not min_scale > 0:
            raise VarfamError(f"mixed likelihood: min_scale must be positive, got {min_scale!r}")
        if scale not in SCALES:
            raise VarfamError(
                f"mixed likelihood: option scale must be one of {', '.join(SCALES)}, got {scale!r}"
            )
        self.columns = parse_columns(columns, self.data_shape[0], "mixed likelihood columns")
        self.min_scale, self.scale = float(min_scale), scale
        if scale == "column":  # one learned scale per column, starting at 1
            self.raw_scale = nn.Parameter(torch.zeros(self.data_shape[0]))
        self.params_per_value = max(params_per_column(c) for c in self.columns)
        kinds: dict[tuple[str, int], list[int]] = {}
        for i, c in enumerate(self.columns):
            kind = "normal" if c.type in ("real", "positive") else c.type
            kinds.setdefault((kind, c.n_levels), []).append(i)
        self._groups: list[_Group] = []
        for g, ((kind, k), idx) in enumerate(kinds.items()):
            buffer = f"_index{g}"
            self.register_buffer(buffer, torch.tensor(idx, dtype=torch.long), persistent=False)
            offset = None
            if kind in ("count", "count-nb"):
                offset = f"_log_mean{g}"
                means = [self.columns[i].loc for i in idx]
                logs = [math.log(m) if m > 0 else 0.0 for m in means]
                self.register_buffer(offset, torch.tensor(logs), persistent=False)
            self._groups.append(_Group(kind, k, buffer, offset))

    def forward(self, params: Tensor) -> MixedColumns:
        factors = []
        for g in self._groups:
            idx = getattr(self, g.buffer)
            p = params.index_select(2, idx)  # (B, P, n)
            factors.append(Factor(g.kind, idx, self._factor(g, p, idx)))
        return MixedColumns(factors, self.data_shape[0], params.shape[0])

    def _factor(self, g: _Group, p: Tensor, idx: Tensor) -> Distribution:
        if g.kind == "normal":
            if self.scale == "row":
                raw = p[:, 1]
            else:
                raw = self.raw_scale.index_select(0, idx).to(p.dtype).expand_as(p[:, 0])
            scale = self.min_scale + F.softplus(raw + _ONE)
            return Normal(p[:, 0], scale, validate_args=False)
        if g.kind == "categorical":
            return Categorical(logits=p[:, : g.levels].transpose(1, 2), validate_args=False)
        if g.kind == "ordinal":
            raw = p[:, 1 : g.levels].transpose(1, 2)
            return OrderedLogistic(p[:, 0], ordered_thresholds(raw))
        log_mean = (p[:, 0] + getattr(self, g.offset).to(p.dtype)).clamp_max(_MAX_LOG_RATE)
        if g.kind == "count":
            return LogRatePoisson(log_mean)
        r = F.softplus(p[:, 1] + _ONE) + _MIN_R  # total count: 1 for an untrained decoder
        return NegativeBinomial(total_count=r, logits=log_mean - r.log(), validate_args=False)

    def check_data(self, x: Tensor) -> None:
        """Refuse data that are not (N, C) or hold values outside a column's support."""
        if x.dim() != 2 or x.shape[1] != self.data_shape[0]:
            raise VarfamError(
                f"the mixed likelihood expects a table of {self.data_shape[0]} columns, "
                f"got data of shape {tuple(x.shape[1:])}"
            )
        for g in self._groups:
            idx = getattr(self, g.buffer).to(x.device)
            v = x.index_select(1, idx)
            observed = ~torch.isnan(v)
            bad = observed & ~torch.isfinite(v)
            what = "infinite values"
            if g.kind in ("count", "count-nb"):
                bad = bad | (observed & ((v < 0) | (v != v.round())))
                what = "values that are not counts 0, 1, 2, ..."
            elif g.kind in ("categorical", "ordinal"):
                bad = bad | (observed & ((v < 0) | (v >= g.levels) | (v != v.round())))
                what = f"values that are not level codes 0..{g.levels - 1}"
            cols = bad.any(0).nonzero().flatten().tolist()
            if cols:
                name = self.columns[int(idx[cols[0]])].name or f"column {int(idx[cols[0]])}"
                raise VarfamError(
                    f"column '{name}' ({self.columns[int(idx[cols[0]])].type}) holds {what}; "
                    "fix the data or its column type"
                )
