"""Imputation and synthesis for tables: MIWAE's importance-sampled conditional expectations.

For a row with observed cells x_o, draw ``z_1..z_K ~ q(z | x_o)`` and weigh them by

    w_k ∝ p(x_o | z_k) p(z_k) / q(z_k | x_o),   Σ_k w_k = 1 (self-normalized),

so that ``Σ_k w_k f(z_k)`` estimates ``E[f(z) | x_o]`` under the model's posterior
(Mattei & Frellsen 2019, "MIWAE: Deep Generative Modelling and Imputation of
Incomplete Data Sets"). A missing cell is filled with

- real, count: its conditional mean ``Σ_k w_k E[x_j | z_k]`` in original units (counts
  rounded); positive: the exponential of the conditional mean of its log (the
  log-normal mean ``exp(μ + σ²/2)`` proved too sensitive to single draws);
- categorical: the most probable level of ``Σ_k w_k p(x_j | z_k)``;
- ordinal: the median level of that mixture (the least expected absolute error).

``draws=M`` gives M multiple imputations by sampling-importance-resampling: for
each, one ``z_k`` is drawn with probabilities ``w_k`` and the missing cells are
drawn from ``p(x_m | z_k)``. Observed cells are copied from the input, never
recomputed, so they come back bit for bit.

A model conditioned on labels imputes a row given its label y, read from the table's
label column: q(z|x_o, y), p(z|y), p(x|z, y). Where a row's label is missing, y is
summed out exactly: the K draws are taken for every class c, and the classes are
mixed with their posterior weights ``p(c|x_o) ∝ p(c) p(x_o|c)`` (p(y) uniform); the
label cell itself is filled with the most probable class.

The same draws give the observed-data log-likelihood of each row,
``log p(x_o) ≈ logsumexp_k log w_k - log K`` (nats, in the original units of the
continuous columns).

>>> import pandas as pd
>>> from varfam import VAE
>>> from varfam.data import load_table
>>> t = load_table(pd.DataFrame({"a": [1.0, 2.0, None, 4.0], "b": list("xyxy")}))
>>> model = VAE.build(**t.model_options(), hidden=(8,), latent_dim=2)
>>> filled = impute(model, t, k=10)
>>> filled.isna().sum().sum(), filled.iloc[[0, 1, 3]].equals(t.frame.iloc[[0, 1, 3]])
(np.int64(0), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from varfam.data.columns import COUNTS, DISCRETE_LEVELS, Column, level_key
from varfam.data.tables import Table, load_table, pandas
from varfam.errors import VarfamError
from varfam.evaluation.importance import block_sizes, weighed_draws
from varfam.likelihoods.mixed import MixedColumns, MixedLikelihood, median_level
from varfam.nets.conditioning import HIDDEN

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from varfam.model import VAE
    from varfam.nets.conditioning import LabelCondition

__all__ = [
    "impute",
    "Imputation",
    "conditional_predictions",
    "sample_table",
    "draw_rows",
    "table_labels",
    "imputation_errors",
    "table_columns",
    "as_table",
]


def table_columns(model: VAE) -> list[Column]:
    """The columns a model of tables was trained on; a VarfamError for other models."""
    if not isinstance(model.likelihood, MixedLikelihood):
        raise VarfamError(
            "this run does not model a table (its likelihood is not mixed); imputation and "
            "table samples need a run trained on a .csv/.parquet table"
        )
    return list(model.likelihood.columns)


def as_table(model: VAE, data: Any, label_column: str | None = None) -> Table:
    """``data`` (a path, DataFrame or :class:`Table`) converted with the model's columns.

    ``label_column``: a column kept out of the model (the run's), where the table has it
    (a :class:`Table` names its own). For a model conditioned on labels the result's
    ``labels`` (N,) are the model's class indices of that column, ``-1`` where a row's
    label is missing (a table without the column: every row), and ``classes`` the model's
    class names (:func:`table_labels`).
    """
    from varfam.data.tables import read_frame

    columns = table_columns(model)
    if isinstance(data, Table):
        label_column = data.label_column if label_column is None else label_column
        if [c.name for c in data.columns] == [c.name for c in columns] and \
                not model.uses_labels:
            return data
        data = data.frame
    name = None
    if isinstance(data, (str, Path)):
        name, data = Path(data).stem, read_frame(data)
    if label_column is not None and label_column not in data.columns:
        label_column = None  # a table without its labels: nothing to keep out
    if not model.uses_labels:
        return load_table(data, columns=[c.to_dict() for c in columns],
                          label_column=label_column, name=name)
    table = load_table(data, columns=[c.to_dict() for c in columns], name=name)
    table.label_column = label_column  # a missing label is summed out, not refused
    table.labels = table_labels(model, data, label_column)
    table.classes = _condition(model).names
    return table


def _condition(model: VAE) -> LabelCondition:
    """The label side of a model conditioned on labels (callers have checked it is)."""
    assert model.condition is not None
    return model.condition


def table_labels(model: VAE, frame: Any, label_column: str | None) -> Tensor | None:
    """The label of each row of ``frame`` as the class index of a model conditioned on
    labels: (N,) int64, ``-1`` where the label is missing (or the frame has no
    ``label_column``); ``None`` for a model without labels. The values are matched to the
    model's class names (``3``, ``3.0`` and ``"3"`` alike); an unknown one raises
    :class:`VarfamError`."""
    from varfam.data.tables import pandas

    if not model.uses_labels:
        return None
    n = len(frame)
    if label_column is None or label_column not in frame.columns:
        return torch.full((n,), HIDDEN, dtype=torch.long)
    names = _condition(model).names
    index = {level_key(v): i for i, v in enumerate(names)}
    out = torch.full((n,), HIDDEN, dtype=torch.long)
    for r, v in enumerate(frame[label_column].tolist()):
        if pandas().isna(v):
            continue
        code = index.get(level_key(v))
        if code is None:
            raise VarfamError(
                f"the label column '{label_column}' holds {v!r} (row {r + 1}), which is not a "
                f"class of this run ({', '.join(names)}); use one of them, or leave the cell "
                "empty to sum the label out"
            )
        out[r] = code
    return out


@dataclass
class Imputation:
    """What :func:`conditional_predictions` returns for N rows, in original units.

    ``values``: {column name: (N,) float64 point imputations (level codes for
    categorical/ordinal)}; ``draws``: (M, N, C) model-unit draws (SIR), or None;
    ``log_likelihood``: (N,) float64 observed-data log p(x_o) (log p(x_o | y) where the
    row's label y is given), nats. For a model conditioned on labels, ``label_probs``
    (N, C) float64: p(y|x_o) of a row whose label was hidden, one-hot where it was
    given; ``draw_labels`` (M, N) int64: the class of each SIR draw.
    """

    values: dict[str, np.ndarray]
    draws: Tensor | None
    log_likelihood: np.ndarray
    label_probs: np.ndarray | None = None
    draw_labels: Tensor | None = None


@torch.inference_mode()
def conditional_predictions(
    model: VAE,
    x: Tensor,
    *,
    y: Tensor | None = None,
    k: int = 1000,
    draws: int = 0,
    seed: int | None = 0,
    memory_mb: float = 64.0,
) -> Imputation:
    """Self-normalized importance sampling with ``k`` draws per row of ``x`` (N, C).

    ``x`` is in model units with NaN where missing; see the module doc for what
    is estimated. ``y`` (N,) int64: for a model conditioned on labels, each row's class,
    ``-1`` where it is not known (``None``: no row's). A row with a label is imputed
    from q(z|x_o, y) and p(x|z, y); a row without one sums y out exactly: the k draws
    are taken for every class, and the classes are weighed by their posterior
    ``p(y|x_o) ∝ p(y) p(x_o|y)`` (p(y) uniform), each estimated from its own draws.
    ``draws``: how many SIR draws to return (0: none). With ``seed``
    the draws are reproducible and torch's global random state is untouched. The rows
    are weighed in chunks whose k draws fit ``memory_mb`` together
    (:func:`varfam.evaluation.importance.block_sizes`).
    """
    if k < 1:
        raise VarfamError(f"the number of importance draws must be at least 1, got {k}")
    columns = table_columns(model)
    labels = None
    if model.uses_labels:
        labels = torch.full((x.shape[0],), HIDDEN, dtype=torch.long) if y is None \
            else _condition(model).labels(y).cpu()
        if labels.shape[0] != x.shape[0]:
            raise VarfamError(f"{labels.shape[0]} labels were given for {x.shape[0]} rows")
    with model.evaluating(seed):
        b, _ = block_sizes(model, x.shape[0], k, memory_mb, samples=k)
        parts = [_rows(model, columns, x[i : i + b].to(model.device, torch.float32), k, draws,
                       None if labels is None else labels[i : i + b].to(model.device))
                 for i in range(0, x.shape[0], b)]
    values = {c.name: np.concatenate([p.points(columns)[c.name] for p in parts])
              for c in columns}
    sir = torch.cat([p.sir.cpu() for p in parts], 1) if draws else None  # type: ignore[union-attr]
    ll = np.concatenate([p.ll.cpu().numpy() for p in parts])
    if labels is None:
        return Imputation(values, sir, ll)
    probs = np.concatenate([p.classes.cpu().numpy() for p in parts])  # type: ignore[union-attr]
    picked = torch.cat([p.sir_classes.cpu() for p in parts], 1)  # type: ignore[union-attr]
    return Imputation(values, sir, ll, probs, picked if draws else None)


@dataclass
class _Estimates:
    """Self-normalized estimates for B rows, linear in the importance weights (so that
    the estimates of several classes mix by their posterior weights): ``stats`` {column
    j: (B,) weighted mean in model units (of the log for positive columns) or (B, K)
    level probabilities}; ``ll`` (B,) float64 log p(x_o) in model units; ``sir`` (M, B, C)
    SIR draws; for a model conditioned on labels ``classes`` (B, n_classes) float64, the
    weight of each class, and ``sir_classes`` (M, B) int64, each draw's class."""

    stats: dict[int, Tensor]
    ll: Tensor
    sir: Tensor
    classes: Tensor | None = None
    sir_classes: Tensor | None = None

    def points(self, columns: list[Column]) -> dict[str, np.ndarray]:
        """The point imputation of every column in original units (level codes)."""
        values = {}
        for j, col in enumerate(columns):
            s = self.stats[j]
            if col.type in DISCRETE_LEVELS:
                point = median_level(s) if col.type == "ordinal" else s.argmax(-1)
            elif col.type in COUNTS:  # the mean rate
                point = s
            else:
                point = _normal_mean(col, s)
            v = point.double().cpu().numpy()
            values[col.name] = np.round(v) if col.type in COUNTS else v
        return values


def _rows(model: VAE, columns: list[Column], x: Tensor, k: int, draws: int,
          y: Tensor | None) -> _Estimates:
    """The estimates of the rows of ``x`` (B, C): with their labels ``y`` where given,
    with y summed out (every class, weighed by p(y|x_o)) where it is -1."""
    if y is None:
        return _estimates(model, x, k, draws, None)
    known = (y >= 0).nonzero().flatten()
    hidden = (y < 0).nonzero().flatten()
    parts = []
    if known.numel():
        parts.append((known, _estimates(model, x[known], k, draws, y[known])))
    if hidden.numel():
        per_class = [_estimates(model, x[hidden], k, draws,
                                torch.full((hidden.numel(),), c, device=y.device))
                     for c in range(_condition(model).n_classes)]
        parts.append((hidden, _summed_out(per_class, draws)))
    if len(parts) == 1 and parts[0][0].numel() == x.shape[0]:
        return parts[0][1]
    return _scattered(parts, x.shape[0])


def _estimates(model: VAE, x: Tensor, k: int, draws: int, y: Tensor | None) -> _Estimates:
    b = x.shape[0]
    weighed = next(weighed_draws(model, x, k, rows=b, samples=k, y=y, decoded=True))
    log_w, px = weighed.log_w, weighed.decoded  # (k, B) float64; p(x|z) of the k·B draws
    assert isinstance(px, MixedColumns)
    w = torch.softmax(log_w, 0)  # (k, B)
    ll = torch.logsumexp(log_w, 0) - math.log(k)
    stats: dict[int, Tensor] = {}
    for f in px.factors:
        idx = f.index.tolist()
        if f.kind in DISCRETE_LEVELS:
            probs = f.dist.probs.double().view(k, b, len(idx), -1)
            mix = (w[..., None, None] * probs).sum(0)  # (B, n, K)
            stats.update({j: mix[:, i] for i, j in enumerate(idx)})
        elif f.kind == "normal":
            loc = f.dist.loc.double().view(k, b, -1)
            stats.update({j: (w * loc[..., i]).sum(0) for i, j in enumerate(idx)})
        else:  # counts: the mean rate
            mean = (w[..., None] * f.dist.mean.double().view(k, b, -1)).sum(0)
            stats.update({j: mean[:, i] for i, j in enumerate(idx)})
    classes = None if y is None else \
        torch.nn.functional.one_hot(y, _condition(model).n_classes).double()
    if not draws:
        return _Estimates(stats, ll, x.new_zeros(0, b, x.shape[1]), classes,
                          None if y is None else y.new_zeros(0, b))
    picks = torch.multinomial(w.T.float(), draws, replacement=True)  # (B, M)
    rows = torch.arange(b, device=x.device)
    sir = []
    for m in range(draws):
        sample = px.sample().view(k, b, -1)[picks[:, m], rows]  # (B, C)
        sir.append(torch.where(torch.isnan(x), sample.to(x.dtype), x))
    return _Estimates(stats, ll, torch.stack(sir), classes,
                      None if y is None else y.expand(draws, b))


def _summed_out(per_class: list[_Estimates], draws: int) -> _Estimates:
    """The estimates of rows whose label is hidden, from those given each class c:
    ``log p(x_o) = logsumexp_c (log p(x_o|c) - log C)``; every estimate is the mixture
    of the classes' with the posterior weights ``p(c|x_o)``; a SIR draw is class c's
    with probability ``p(c|x_o)``."""
    ll = torch.stack([e.ll for e in per_class])  # (C, B)
    post = torch.softmax(ll, 0)  # p(y) uniform: it cancels
    stats = {j: sum((post[c].view(-1, *[1] * (e.stats[j].dim() - 1)) * e.stats[j]
                     for c, e in enumerate(per_class)), torch.zeros(()))
             for j in per_class[0].stats}
    total = torch.logsumexp(ll, 0) - math.log(len(per_class))
    sir, picked = per_class[0].sir, per_class[0].sir_classes
    if draws:
        picks = torch.multinomial(post.T.float(), draws, replacement=True)  # (B, M)
        every = torch.stack([e.sir for e in per_class])  # (C, M, B, cols)
        rows = torch.arange(picks.shape[0], device=picks.device)
        sir = torch.stack([every[picks[:, m], m, rows] for m in range(draws)])
        picked = picks.T
    return _Estimates(stats, total, sir, post.T, picked)  # type: ignore[arg-type]


def _scattered(parts: list[tuple[Tensor, _Estimates]], n: int) -> _Estimates:
    """One :class:`_Estimates` of ``n`` rows from estimates of disjoint rows (index, est)."""
    first = parts[0][1]
    stats = {j: first.stats[j].new_zeros((n, *first.stats[j].shape[1:])) for j in first.stats}
    ll = first.ll.new_zeros(n)
    sir = first.sir.new_zeros((first.sir.shape[0], n, *first.sir.shape[2:]))
    assert first.classes is not None and first.sir_classes is not None  # rows with labels
    classes = first.classes.new_zeros((n, first.classes.shape[1]))
    picked = first.sir_classes.new_zeros((sir.shape[0], n))
    for index, e in parts:
        assert e.classes is not None and e.sir_classes is not None
        for j in stats:
            stats[j][index] = e.stats[j]
        ll[index] = e.ll
        sir[:, index] = e.sir
        classes[index] = e.classes
        picked[:, index] = e.sir_classes
    return _Estimates(stats, ll, sir, classes, picked)


def _normal_mean(col: Column, mean_u: Tensor) -> Tensor:
    """The point imputation in original units of a real or positive column: (B,), from
    the weighted mean of the decoder's means in model units ``Σ_k w_k μ_k`` (B,).

    Real: the conditional mean. Positive: ``exp(E[log(x + offset) | x_o]) - offset``,
    the conditional geometric mean (the log-normal's median, averaged on the log
    scale). The conditional mean ``Σ_k w_k exp(μ_k + σ_k²/2)`` is dominated by any
    draw with a large σ_k; measured on HI-VAE's Wine data it ruined the imputation of
    one mask in two, so the median is used.
    """
    mean = mean_u * col.scale + col.loc
    if col.type == "real":
        return mean
    return torch.exp(mean) - col.offset


def _jacobian(columns: list[Column], x: Tensor) -> np.ndarray:
    """Σ_j log |du_j/dx_j| over each row's observed cells (N,): model units → original."""
    u = x.double().cpu().numpy()
    total = np.zeros(u.shape[0])
    for j, col in enumerate(columns):
        observed = ~np.isnan(u[:, j])
        total[observed] += col.log_jacobian(u[observed, j])
    return total


def _fill(table: Table, columns: list[Column], values: dict[str, np.ndarray]) -> pd.DataFrame:
    """The table's frame with its missing modelled cells replaced by ``values`` (original
    units; level codes for categorical and ordinal columns); other cells untouched."""
    pd = pandas()
    out = table.frame.copy()
    missing = torch.isnan(table.x).numpy()
    for j, col in enumerate(columns):
        rows = np.flatnonzero(missing[:, j])
        if rows.size == 0:
            continue
        v = values[col.name][rows]
        if col.type in DISCRETE_LEVELS:
            levels = list(col.levels or ())
            filled: Any = [levels[int(c)] for c in np.clip(np.round(v), 0, len(levels) - 1)]
        else:
            filled = np.maximum(v, 0.0) if col.type != "real" else v
        series = out[col.name]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            new = series.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
            new[rows] = np.asarray(filled, dtype=np.float64)
            out[col.name] = pd.Series(new, index=out.index).astype(series.dtype, errors="ignore")
        else:
            values_list = series.astype(object).tolist()
            for r, value in zip(rows, filled):
                values_list[r] = value
            out[col.name] = pd.Series(values_list, index=out.index, dtype=object)
            try:
                out[col.name] = out[col.name].astype(series.dtype)
            except (TypeError, ValueError):
                pass
    return out


def impute(
    model: VAE,
    data: Any,
    *,
    k: int = 1000,
    draws: int = 0,
    seed: int = 0,
    label_column: str | None = None,
    return_log_likelihood: bool = False,
) -> Any:
    """Fill the missing cells of a table (path, DataFrame or :class:`Table`) with ``model``.

    Single imputation (``draws=0``): a DataFrame shaped like the input with each
    missing modelled cell replaced by its conditional mean or level (module doc).
    ``draws=M``: a list of M DataFrames, multiple imputations by SIR. ``k``:
    importance draws per row. With ``return_log_likelihood`` the result is a pair
    (imputations, per-row observed-data log-likelihood (N,) in nats).

    A model conditioned on labels reads each row's label from ``label_column`` (a
    :class:`Table` names its own): a row whose label is given is imputed given it, a row
    whose label is missing (or a table without the column) with the label summed out
    (:func:`conditional_predictions`), and its label cell is filled with the most probable
    class under p(y|x_o) (a SIR draw's own class with ``draws``). Row ``i`` of the result
    is row ``i`` of the input.
    """
    columns = table_columns(model)
    table = as_table(model, data, label_column)
    res = conditional_predictions(model, table.x, y=table.labels if model.uses_labels else None,
                                  k=k, draws=draws, seed=seed)
    if draws:
        assert res.draws is not None
        out: Any = []
        for m in range(draws):
            frame = table.to_frame(res.draws[m])
            codes = _codes_of(frame, columns)
            out.append(_fill_labels(_fill(table, columns, codes), table, model,
                                    None if res.draw_labels is None else res.draw_labels[m]))
    else:
        out = _fill_labels(_fill(table, columns, res.values), table, model,
                           None if res.label_probs is None else res.label_probs.argmax(1))
    if return_log_likelihood:
        return out, res.log_likelihood + _jacobian(columns, table.x)
    return out


def _fill_labels(out: pd.DataFrame, table: Table, model: VAE, classes: Any) -> pd.DataFrame:
    """``out`` with each missing cell of the table's label column filled with ``classes``
    (N,) (the most probable class under p(y|x_o), or a SIR draw's), as class names."""
    column = table.label_column
    if classes is None or column is None or column not in out.columns:
        return out
    rows = np.flatnonzero(out[column].isna().to_numpy())
    if rows.size:
        numeric = pandas().api.types.is_numeric_dtype(out[column])
        values = out[column].astype(object).tolist()
        for r in rows:
            name = _condition(model).names[int(classes[r])]
            values[r] = float(name) if numeric and _is_float(name) else name
        out[column] = values
    return out


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _codes_of(frame: pd.DataFrame, columns: list[Column]) -> dict[str, np.ndarray]:
    """Original-unit values by column, with categorical and ordinal levels as codes."""
    out = {}
    for col in columns:
        if col.type in DISCRETE_LEVELS:
            index = {level_key(v): i for i, v in enumerate(col.levels or ())}
            out[col.name] = np.array([index[level_key(v)] for v in frame[col.name].tolist()],
                                     dtype=np.float64)
        else:
            out[col.name] = frame[col.name].to_numpy(dtype=np.float64)
    return out


@torch.no_grad()
def sample_table(model: VAE, n: int, y: Any = None, *, seed: int | None = 0,
                 label_column: str | None = None) -> pd.DataFrame:
    """``n`` synthetic rows: z ~ p(z), x ~ p(x | z), in original units and levels.

    For a model conditioned on labels, ``y`` picks the classes (one class for every row,
    or n of them, as indices or names); without it each row's class is drawn from p(y),
    uniform. Each row's class name is then written in a last column ``label_column``
    (default ``"label"``; ``varfam sample`` names it as the run's label column).
    """
    from varfam.data.tables import from_model_units

    columns = table_columns(model)
    with model.evaluating(seed):
        x, labels = draw_rows(model, n, y)
    frame = from_model_units(x, columns)
    if labels is not None:
        frame[label_column or "label"] = [_condition(model).names[int(c)] for c in labels]
    return frame


def draw_rows(model: VAE, n: int, y: Any = None) -> tuple[Tensor, Tensor | None]:
    """``n`` rows (n, C) in model units drawn from the model, and their labels (n,) int64
    (``None`` for a model without labels): z ~ p(z|y), x ~ p(x|z, y), with ``y`` as in
    :func:`sample_table`. Draws from torch's random state (seed it with
    :meth:`VAE.evaluating <varfam.model.VAE.evaluating>`)."""
    if not model.uses_labels:
        if y is not None:
            raise VarfamError("this run is not conditioned on labels, so it draws rows of no "
                              "class; leave the label (--label) out")
        return model.decode(model.prior_distribution().sample((n,))).sample(), None
    if y is None:
        y = torch.randint(_condition(model).n_classes, (n,), device=model.device)
    labels = model.labels(y, n)
    p = model.prior_distribution(labels)
    z = p.sample() if p.batch_shape == (n,) else p.sample((n,))
    return model.decode(z, labels).sample(), labels


def imputation_errors(
    truth: pd.DataFrame, imputed: pd.DataFrame, hidden: np.ndarray, columns: list[Column],
) -> dict[str, Any]:
    """Per-column errors of ``imputed`` against ``truth`` on the ``hidden`` cells (N, C) bool.

    Per column: ``rmse`` for real, positive and count columns, ``error_rate`` for
    categorical ones, ``mean_abs_levels`` for ordinal ones, and HI-VAE's normalized
    error ``nerror`` (RMSE / (max - min) of the true column; error rate; mean
    |Δ level| / K). Returns {"columns": {name: {...}}, "nerror": mean over columns}.
    """
    per: dict[str, dict[str, float]] = {}
    for j, col in enumerate(columns):
        rows = np.flatnonzero(hidden[:, j])
        if rows.size == 0:
            continue
        t, p = truth[col.name].iloc[rows], imputed[col.name].iloc[rows]
        if col.type in DISCRETE_LEVELS:
            index = {level_key(v): i for i, v in enumerate(col.levels or ())}
            tc = np.array([index.get(level_key(v), -1) for v in t.tolist()], dtype=float)
            pc = np.array([index.get(level_key(v), -1) for v in p.tolist()], dtype=float)
            if col.type == "categorical":
                rate = float(np.mean(tc != pc))
                per[col.name] = {"error_rate": rate, "nerror": rate, "n": int(rows.size)}
            else:
                mad = float(np.mean(np.abs(tc - pc)))
                per[col.name] = {"mean_abs_levels": mad, "nerror": mad / col.n_levels,
                                 "n": int(rows.size)}
        else:
            tv = t.to_numpy(dtype=np.float64)
            pv = p.to_numpy(dtype=np.float64)
            rmse = float(np.sqrt(np.mean((tv - pv) ** 2)))
            full = truth[col.name].to_numpy(dtype=np.float64)
            span = float(np.nanmax(full) - np.nanmin(full)) or 1.0
            per[col.name] = {"rmse": rmse, "nerror": rmse / span, "n": int(rows.size)}
    mean = float(np.mean([v["nerror"] for v in per.values()])) if per else float("nan")
    return {"columns": per, "nerror": mean}


def read_truth(path: str | Path, table: Table) -> pd.DataFrame:
    """The complete table ``path`` for ``--truth``: same columns and rows as ``table``."""
    from varfam.data.tables import read_frame

    truth = read_frame(path)
    if list(truth.columns) != list(table.frame.columns) or len(truth) != len(table.frame):
        raise VarfamError(
            f"--truth {path} must have the same columns and rows as the imputed table "
            f"({len(table.frame)} rows: {', '.join(map(str, table.frame.columns))})"
        )
    return truth


__all__ += ["read_truth"]
