"""Tables with missing cells: read, infer column types, convert to model units and back.

``load_table(source)`` reads a CSV/TSV (``.csv``, ``.tsv``, ``.tab``), Parquet
(``.parquet``, needs pyarrow) or 2-D NumPy (``.npy``/``.npz``) file, or takes a
pandas DataFrame. Empty cells, ``NA``, ``NaN`` (pandas' missing markers) are
missing. A header row gives the column names (a first row that holds a number is
read as data, and the columns are named ``x1, x2, ...``).

Column types (:mod:`varfam.data.columns`) are inferred, then overridden by
``column_types`` (a dict, or a ``.toml`` / ``.csv`` file). The rules read what the
values are, never how many distinct values happen to be observed, so that a
column gets the same type with or without missing cells, in 100 rows or a million:

- bools and text → ``categorical``;
- numbers with at most two distinct values (0/1, 1/2, yes/no codes) → ``categorical``;
- other non-negative whole numbers → ``count`` (Poisson), or ``count-nb`` when
  their variance exceeds twice their mean; whole numbers with negative ones → ``real``;
- other numbers → ``positive`` when every value is > 0, else ``real``.

Two kinds of column are left out of the model (not modelled, kept in the frame, so
``impute`` returns them unchanged), and the reason is recorded in
:attr:`Table.dropped` and printed by ``varfam train``:

- **identifiers**: at least :data:`ID_MIN_ROWS` observed values, every one different,
  that are text, or whole numbers that are consecutive (row numbers) or in a column
  named like an identifier (``id``, ``user_id``, ``userId``, ``index``, ``key``...);
- **dates**: a datetime column, or text that is all dates (``2024-01-31``,
  ``2024/01/31 12:00``, ``31/01/2024``...).

Declaring such a column's type in ``column_types`` models it as declared.

Continuous columns are standardized with the mean and standard deviation of
the observed cells of the *training* rows (the fixed seeded 90 % of
:func:`varfam.data.base.split_indices`); the levels of a categorical or ordinal
column are every value seen in the file (ordinal whole numbers: every integer
from the smallest to the largest). A saved model's columns (``columns=``)
convert a new table exactly as in training.

A ``--column-types`` file is either TOML (``name = "type"`` or
``name = {type = "ordinal", levels = ["low", "mid", "high"]}``, at the top or
under ``[columns]``) or CSV with a header ``name,type[,levels]`` (levels
separated by ``|``). HI-VAE's ``data_types.csv`` (``type,dim,nclass``, no names)
gives the types of the columns in order.

>>> import pandas as pd
>>> t = load_table(pd.DataFrame({"size": [1.5, 2.5, None, 3.0], "colour": list("rgbr")}))
>>> [(c.name, c.type) for c in t.columns], t.x.shape
([('size', 'positive'), ('colour', 'categorical')], torch.Size([4, 2]))
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tomllib
import torch
from torch import Tensor

from varfam.data.base import SPLIT_SEED, Dataset, held_out_count, one_line, split_indices
from varfam.data.columns import (
    CONTINUOUS,
    COUNTS,
    DISCRETE_LEVELS,
    Column,
    canonical_type,
    level_key,
    parse_columns,
)
from varfam.errors import VarfamError
from varfam.registry import DATASETS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "Table",
    "TableDataset",
    "load_table",
    "read_frame",
    "read_column_types",
    "infer_columns",
    "inferred_types",
    "to_model_units",
    "from_model_units",
    "write_frame",
    "describe_columns",
    "configure_model",
    "data_summary",
    "TABLE_SUFFIXES",
    "ID_MIN_ROWS",
]

#: File suffixes read as tables.
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet", ".pq")
#: An all-distinct column with fewer observed values than this is never taken for an
#: identifier (a small table's text column may well be all distinct).
ID_MIN_ROWS = 20
_ID_NAME = re.compile(
    r"(?:id|ids|idx|index|key|uuid|guid|row|rowid|row_id|row_number|record|record_id)"
    r"|.*[_\s.-](?:id|idx|key|uuid)", re.IGNORECASE)
_CAMEL_ID = re.compile(r".*[a-z0-9](?:Id|ID|Idx|Key|Uuid)")
_DATE = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?"
    r"|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}(?: \d{1,2}:\d{2}(?::\d{2})?)?")


def pandas() -> Any:
    """The pandas module, or a VarfamError naming the extra to install."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a declared extra
        raise VarfamError("tables need pandas: pip install 'varfam[tables]'") from None
    return pd


# ---------------------------------------------------------------- reading
def read_frame(path: str | Path, key: str | None = None) -> pd.DataFrame:
    """A table file as a DataFrame with string column names (see the module doc)."""
    pd = pandas()
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            try:
                frame = pd.read_parquet(path)
            except ImportError:
                raise VarfamError(
                    "reading Parquet needs pyarrow: pip install 'varfam[tables]'"
                ) from None
        elif suffix in (".npy", ".npz"):
            frame = _array_frame(path, key)
        else:
            sep = "\t" if suffix in (".tsv", ".tab") else ","
            frame = pd.read_csv(path, sep=sep, skipinitialspace=True)
            if any(_is_number(c) for c in frame.columns):  # no header: the first row is data
                frame = pd.read_csv(path, sep=sep, header=None, skipinitialspace=True)
                frame.columns = [f"x{i + 1}" for i in range(frame.shape[1])]
    except VarfamError:
        raise
    except FileNotFoundError:
        raise VarfamError(f"table file {path} does not exist") from None
    except Exception as e:  # pandas raises many types for malformed files
        raise VarfamError(f"cannot read {path} as a table: {one_line(e)}") from None
    frame.columns = [str(c) for c in frame.columns]
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise VarfamError(f"{path} holds no table rows or columns")
    return frame


def _is_number(text: Any) -> bool:
    try:
        return math.isfinite(float(str(text)))
    except ValueError:
        return False


def _array_frame(path: Path, key: str | None) -> pd.DataFrame:
    pd = pandas()
    loaded = np.load(path, allow_pickle=False)
    if not isinstance(loaded, np.ndarray):
        with loaded:
            names = [k for k in loaded.files if k not in ("labels", "y")]
            name = key or (names[0] if len(names) == 1 else None)
            if name is None or name not in loaded.files:
                raise VarfamError(
                    f"{path} holds several arrays ({', '.join(loaded.files)}); "
                    "choose one with --key"
                )
            loaded = loaded[name]
    if loaded.ndim != 2 or loaded.dtype.kind not in "biuf":
        raise VarfamError(
            f"{path} holds an array of shape {loaded.shape} and dtype {loaded.dtype}; a table "
            "is a 2-D numeric array (rows × columns, NaN for missing cells)"
        )
    return pd.DataFrame(loaded, columns=[f"x{i + 1}" for i in range(loaded.shape[1])])


def read_column_types(path: str | Path) -> dict[str, dict[str, Any]] | list[dict[str, Any]]:
    """A ``--column-types`` file: {name: {"type", "levels"?}}, or a list in column order."""
    path = Path(path)
    if not path.is_file():
        raise VarfamError(f"column types file {path} does not exist")
    if path.suffix.lower() == ".toml":
        try:
            doc = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise VarfamError(f"column types file {path} is not valid TOML: {e}") from None
        doc = doc.get("columns", doc) if isinstance(doc.get("columns"), dict) else doc
        return {str(k): _type_entry(v, f"{path}: {k}") for k, v in doc.items()}
    text = path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n")
    rows = [r.split(",") for r in text.replace("\r", "\n").split("\n") if r.strip()]
    header = [h.strip().lower() for h in rows[0]] if rows else []
    if "type" not in header:
        raise VarfamError(
            f"column types file {path} needs a header row with 'name,type' (and optionally "
            "'levels', separated by |), or a .toml file"
        )
    t = header.index("type")
    n = header.index("name") if "name" in header else None
    lv = header.index("levels") if "levels" in header else None
    entries = []
    for r in rows[1:]:
        entry: dict[str, Any] = {"type": r[t].strip()}
        if lv is not None and lv < len(r) and r[lv].strip():
            entry["levels"] = [v.strip() for v in r[lv].split("|")]
        entries.append((r[n].strip() if n is not None else None, entry))
    if n is None:  # HI-VAE's data_types.csv: one row per column, in order
        return [_type_entry(e, f"{path} row {i + 2}") for i, (_, e) in enumerate(entries)]
    return {name: _type_entry(e, f"{path}: {name}") for name, e in entries}


def _type_entry(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or "type" not in value:
        raise VarfamError(f"{where}: give a type, e.g. \"real\" or {{type = \"ordinal\"}}")
    unknown = set(value) - {"type", "levels"}
    if unknown:
        raise VarfamError(f"{where}: unknown key(s) {sorted(unknown)}; use type and levels")
    out = {"type": canonical_type(value["type"], f"column type ({where})")}
    if value.get("levels") is not None:
        out["levels"] = list(value["levels"])
    return out


# ---------------------------------------------------------------- types
def _numeric(series: pd.Series, name: str, declared: str | None) -> np.ndarray:
    """The column as float64 with NaN for missing cells; non-numbers are user errors."""
    pd = pandas()
    missing = series.isna().to_numpy()
    if series.dtype == bool:
        return series.astype(float).to_numpy()
    values = pd.to_numeric(series.where(~missing), errors="coerce")
    values = values.astype("float64").to_numpy(na_value=np.nan)
    bad = np.isnan(values) & ~missing
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise VarfamError(
            f"column '{name}' is {declared or 'numeric'} but holds the non-numeric value "
            f"{series.iloc[row]!r} (row {row + 1}); fix that cell or declare the column "
            "categorical in --column-types"
        )
    return values


def _looks_numeric(series: pd.Series) -> bool:
    pd = pandas()
    if series.dtype == bool:
        return False
    if pd.api.types.is_numeric_dtype(series):
        return True
    kept = series.dropna()
    return bool(pd.to_numeric(kept, errors="coerce").notna().all())


def _infer_type(series: pd.Series) -> tuple[str | None, str]:
    """(type, why) of an undeclared column; type ``None``: leave it out (see the module doc)."""
    pd = pandas()
    kept = series.dropna()
    if pd.api.types.is_datetime64_any_dtype(series) or _all_dates(kept):
        return None, "dates"
    if series.dtype == bool:
        return "categorical", "true/false values"
    if not _looks_numeric(series):
        distinct = len({level_key(v) for v in kept.tolist()})
        if _is_identifier(str(series.name), len(kept), distinct, text=True):
            return None, f"an identifier: text whose {distinct} values all differ"
        return "categorical", f"text, {distinct} distinct values"
    v = _numeric(series, str(series.name), None)
    v = v[~np.isnan(v)]
    distinct = len(np.unique(v))
    whole = bool(np.all(v == np.round(v)))
    if whole and distinct == v.size and _is_identifier(
            str(series.name), v.size, distinct, text=False,
            consecutive=bool(v.size and v.max() - v.min() == v.size - 1)):
        return None, f"an identifier: whole numbers whose {distinct} values all differ"
    if distinct <= 2:
        return "categorical", f"{distinct} distinct value{'s' if distinct > 1 else ''}"
    if whole:
        if v.min() < 0:
            return "real", "whole numbers, some negative"
        if v.var() <= 2 * max(v.mean(), 1e-12):
            return "count", "whole numbers >= 0"
        return "count-nb", "whole numbers >= 0, variance > 2 x mean"
    return ("positive", "numbers, all > 0") if v.min() > 0 else ("real", "numbers")


def _is_identifier(name: str, n: int, distinct: int, *, text: bool,
                   consecutive: bool = False) -> bool:
    if n < ID_MIN_ROWS or distinct != n:
        return False
    named = bool(_ID_NAME.fullmatch(name.strip()) or _CAMEL_ID.fullmatch(name.strip()))
    return text or consecutive or named


def _all_dates(kept: pd.Series) -> bool:
    """Whether every observed value is text that reads as a date (numbers never do)."""
    pd = pandas()
    if kept.empty or kept.dtype == bool or pd.api.types.is_numeric_dtype(kept):
        return False
    values = kept.tolist()
    return all(isinstance(v, str) and _DATE.fullmatch(v.strip()) for v in values)


def _sorted_levels(values: list[Any]) -> list[Any]:
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return sorted(bool(v) for v in values)
    if all(_is_number(v) and not isinstance(v, (bool, np.bool_)) for v in values):
        return sorted(values, key=lambda v: float(v))
    return sorted(values, key=lambda v: str(v))


def _levels(series: pd.Series, kind: str, given: list[Any] | None) -> list[Any]:
    if given is not None:
        return list(given)
    seen: dict[str, Any] = {}
    for v in series.dropna().tolist():
        seen.setdefault(level_key(v), v)
    values = _sorted_levels(list(seen.values()))
    if kind == "ordinal" and values and all(
        _is_number(v) and float(v).is_integer() for v in values
    ):
        lo, hi = int(float(values[0])), int(float(values[-1]))
        if hi - lo < 10_000:
            return list(range(lo, hi + 1))
    return values


def inferred_types(
    frame: pd.DataFrame,
    types: dict[str, dict[str, Any]] | list[dict[str, Any]] | None = None,
) -> dict[str, tuple[dict[str, Any] | None, str]]:
    """What each column of ``frame`` becomes: name → (type entry, why).

    The entry is the declared one (``{"type", "levels"?}``, why ``"declared"``) or the
    inferred ``{"type": ...}`` with the reason (module doc); ``None`` for a column left
    out of the model (an identifier or dates), the reason saying which.
    """
    names = list(frame.columns)
    if isinstance(types, list):
        if len(types) != len(names):
            raise VarfamError(
                f"the column types list {len(types)} columns but the table has {len(names)} "
                f"({', '.join(names)})"
            )
        types = dict(zip(names, types))
    types = types or {}
    unknown = [k for k in types if k not in names]
    if unknown:
        raise VarfamError(
            f"--column-types names unknown column(s) {', '.join(repr(u) for u in unknown)}; "
            f"the table's columns: {', '.join(names)}"
        )
    out: dict[str, tuple[dict[str, Any] | None, str]] = {}
    for name in names:
        series = frame[name]
        if series.isna().all():
            raise VarfamError(
                f"column '{name}' has no observed cell (every value is missing); drop it"
            )
        if types.get(name, {}).get("type"):
            out[name] = (dict(types[name]), "declared")
        else:
            kind, why = _infer_type(series)
            out[name] = (None if kind is None else {"type": kind}, why)
    return out


def infer_columns(
    frame: pd.DataFrame,
    types: dict[str, dict[str, Any]] | list[dict[str, Any]] | None = None,
    train_rows: np.ndarray | None = None,
) -> list[Column]:
    """One :class:`Column` per modelled column of ``frame``: inferred or declared type,
    levels, statistics (identifiers and dates are left out: :func:`inferred_types`).

    ``types``: declared types by name (or a list in column order); ``train_rows``:
    the rows whose observed cells give the standardization (default: all).
    """
    decided = inferred_types(frame, types)
    kept = [name for name, (entry, _) in decided.items() if entry is not None]
    if not kept:
        left = "; ".join(f"'{n}' ({why})" for n, (_, why) in decided.items())
        raise VarfamError(
            f"no column of the table is left to model: {left}; declare the types of the "
            "columns to model in --column-types"
        )
    rows = np.arange(len(frame)) if train_rows is None else np.asarray(train_rows)
    out = []
    for name in kept:
        series = frame[name]
        declared = decided[name][0] or {}
        kind = declared["type"]
        col = Column(name=name, type=kind, dtype=str(series.dtype),
                     levels=_levels(series, kind, declared.get("levels"))
                     if kind in DISCRETE_LEVELS else None)
        if kind not in DISCRETE_LEVELS:
            values = _numeric(series, name, kind)
            train = values[rows]
            train = train[~np.isnan(train)]
            if train.size == 0:
                raise VarfamError(
                    f"column '{name}' has no observed cell in the training rows; drop it"
                )
            _check_support(col, values)
            if kind == "positive" and train.min() <= 0:
                col.offset = float(train[train > 0].min()) if (train > 0).any() else 1.0
            if kind in CONTINUOUS:
                t = np.log(train + col.offset) if kind == "positive" else train
                scale = float(t.std())
                col.loc, col.scale = float(t.mean()), scale if scale > 1e-12 else 1.0
            else:
                col.loc = float(train.mean())
        out.append(col)
    return out


def _check_support(col: Column, values: np.ndarray) -> None:
    v = values[~np.isnan(values)]
    if not np.isfinite(v).all():
        raise VarfamError(f"column '{col.name}' holds infinite values; fix or remove them")
    if col.type == "positive" and (v < 0).any():
        raise VarfamError(
            f"column '{col.name}' is positive but holds the negative value {v[v < 0][0]:g}; "
            "declare it real in --column-types"
        )
    if col.type in COUNTS and ((v < 0) | (v != np.round(v))).any():
        bad = v[(v < 0) | (v != np.round(v))][0]
        raise VarfamError(
            f"column '{col.name}' is a count but holds {bad:g}; counts are 0, 1, 2, ... "
            "(declare it real in --column-types)"
        )


# ---------------------------------------------------------------- units
def to_model_units(frame: pd.DataFrame, columns: list[Column]) -> np.ndarray:
    """``frame``'s modelled columns → (N, C) float32 in model units, NaN where missing."""
    missing_cols = [c.name for c in columns if c.name not in frame.columns]
    if missing_cols:
        raise VarfamError(
            f"the table lacks the column(s) {', '.join(repr(m) for m in missing_cols)} "
            f"the model was trained on; its columns: {', '.join(map(str, frame.columns))}"
        )
    out = np.empty((len(frame), len(columns)), dtype=np.float32)
    for j, col in enumerate(columns):
        series = frame[col.name]
        if col.type in DISCRETE_LEVELS:
            out[:, j] = _codes(series, col)
        else:
            values = _numeric(series, col.name, col.type)
            _check_support(col, values)
            out[:, j] = col.to_model(values)
    return out


def _codes(series: pd.Series, col: Column) -> np.ndarray:
    index = {level_key(v): i for i, v in enumerate(col.levels or ())}
    codes = np.full(len(series), np.nan)
    for r, v in enumerate(series.tolist()):
        if _is_na(v):
            continue
        code = index.get(level_key(v))
        if code is None:
            shown = ", ".join(str(x) for x in (col.levels or ())[:12])
            raise VarfamError(
                f"column '{col.name}' holds the level {v!r} (row {r + 1}), which the model "
                f"never saw in training (its levels: {shown}); map it to a known level or "
                "leave the cell empty"
            )
        codes[r] = code
    return codes


def _is_na(v: Any) -> bool:
    pd = pandas()
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def from_model_units(values: np.ndarray | Tensor, columns: list[Column]) -> pd.DataFrame:
    """(N, C) model-unit values → a DataFrame in original units, levels and dtypes."""
    pd = pandas()
    v = values.detach().cpu().double().numpy() if isinstance(values, Tensor) else values
    data = {}
    for j, col in enumerate(columns):
        data[col.name] = _original(col, np.asarray(v[:, j], dtype=np.float64))
    return pd.DataFrame(data)


def _original(col: Column, u: np.ndarray) -> Any:
    pd = pandas()
    if col.type in DISCRETE_LEVELS:
        levels = list(col.levels or ())
        codes = np.clip(np.round(u), 0, len(levels) - 1).astype(int)
        series = pd.Series([levels[c] for c in codes], dtype=object)
    elif col.type in COUNTS:
        series = pd.Series(np.round(np.maximum(u, 0)))
    else:
        x = col.from_model(u)
        series = pd.Series(np.maximum(x, 0.0) if col.type == "positive" else x)
    try:
        return series.astype(col.dtype)
    except (TypeError, ValueError):
        return series


def write_frame(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as .csv/.tsv/.parquet/.npy (by suffix); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".tab"):
        frame.to_csv(path, sep="\t" if suffix != ".csv" else ",", index=False)
    elif suffix in (".parquet", ".pq"):
        try:
            frame.to_parquet(path, index=False)
        except ImportError:
            raise VarfamError("writing Parquet needs pyarrow: pip install 'varfam[tables]'") \
                from None
    elif suffix == ".npy":
        try:
            np.save(path, frame.to_numpy(dtype=np.float64))
        except (TypeError, ValueError):
            raise VarfamError(f"{path}: the table has text columns; write .csv or .parquet") \
                from None
    else:
        raise VarfamError(f"output {path} must end in .csv, .tsv, .parquet or .npy")
    return path


# ---------------------------------------------------------------- the table
@dataclass
class Table:
    """A table read for a model: the frame as read, its modelled columns, model units.

    ``frame``: every column as read (the label column too); ``columns``: the
    modelled columns in order; ``x``: (N, C) float32 model units with NaN where
    missing; ``labels``: (N,) int64 codes of ``label_column`` (or ``None``), with
    the level names in ``classes``. ``notes``: why each modelled column has its type
    (``"declared"`` or the inference's reason; empty for a saved model's columns);
    ``dropped``: the columns left out of the model (identifiers, dates) and why.
    """

    frame: Any
    columns: list[Column]
    x: Tensor
    labels: Tensor | None = None
    classes: tuple[str, ...] | None = None
    label_column: str | None = None
    name: str = "table"
    notes: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def missing(self) -> Tensor:
        """(N, C) bool: True where a modelled cell is missing."""
        return torch.isnan(self.x)

    def to_frame(self, values: np.ndarray | Tensor) -> pd.DataFrame:
        """Model-unit values (N, C) → a DataFrame in original units and levels."""
        return from_model_units(values, self.columns)

    def split(self) -> tuple[Tensor, Tensor]:
        """Row indices (train, test) of the fixed seeded 90/10 split."""
        n = self.x.shape[0]
        return split_indices(n, held_out_count(n), SPLIT_SEED)

    def dataset(self) -> TableDataset:
        """The table as a :class:`TableDataset` with the fixed seeded 90/10 split (each
        example's row in the table in ``train_index``/``test_index``)."""
        tr, te = self.split()
        y = self.labels
        return TableDataset(
            self.name, self.x[tr].contiguous(), self.x[te].contiguous(),
            None if y is None else y[tr], None if y is None else y[te], self.classes,
            train_index=tr, test_index=te,
            columns=tuple(self.columns), label_column=self.label_column,
            notes=dict(self.notes), dropped=dict(self.dropped),
        )

    def model_options(self) -> dict[str, Any]:
        """Keywords of :meth:`varfam.VAE.build` for this table (data shape, likelihood, arch)."""
        return {
            "data_shape": (len(self.columns),),
            "likelihood": "mixed",
            "likelihood_options": {"columns": [c.to_dict() for c in self.columns]},
            "arch": "tabular",
            "arch_options": {"levels": [c.n_levels for c in self.columns]},
        }


@dataclass
class TableDataset(Dataset):
    """A :class:`~varfam.data.Dataset` whose examples are table rows: adds ``columns``
    (and, from :class:`Table`, ``notes`` and ``dropped``: why each column has its type
    or was left out)."""

    columns: tuple[Column, ...] = ()
    label_column: str | None = None
    notes: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)


def load_table(
    source: Any,
    *,
    column_types: str | Path | dict | list | None = None,
    label_column: str | None = None,
    columns: list | None = None,
    key: str | None = None,
    name: str | None = None,
) -> Table:
    """Read a table (path or DataFrame) for a model; see the module doc.

    ``columns``: a saved model's columns (``model.config.likelihood_options["columns"]``):
    then the table is converted exactly as in training and types are not inferred.
    ``column_types``: declared types (a dict, a list in column order, or a .toml/.csv
    file). ``label_column``: a column kept out of the model, returned as ``labels``.
    """
    pd = pandas()
    if isinstance(source, pd.DataFrame):
        frame, name = source, name or "table"
    else:
        frame = read_frame(source, key)
        name = name or Path(str(source)).stem
    if label_column is not None and label_column not in frame.columns:
        raise VarfamError(
            f"--label-column '{label_column}' is not a column of the table; its columns: "
            f"{', '.join(map(str, frame.columns))}"
        )
    features = frame.drop(columns=[label_column]) if label_column else frame
    notes: dict[str, str] = {}
    dropped: dict[str, str] = {}
    if columns is not None:
        cols = parse_columns(columns, None, "columns")
    else:
        types = read_column_types(column_types) if isinstance(column_types, (str, Path)) \
            else column_types
        if label_column and isinstance(types, dict):
            types = {k: v for k, v in types.items() if k != label_column}
        if isinstance(types, dict):
            types = {k: _type_entry(v, f"column types: {k}") for k, v in types.items()}
        decided = inferred_types(features, types)
        notes = {k: why for k, (entry, why) in decided.items() if entry is not None}
        dropped = {k: why for k, (entry, why) in decided.items() if entry is None}
        n = len(features)
        train = split_indices(n, held_out_count(n), SPLIT_SEED)[0].numpy() if n >= 2 else None
        kept = {k: entry for k, (entry, _) in decided.items() if entry is not None}
        cols = infer_columns(features[list(kept)] if kept else features, kept or types, train)
    x = torch.from_numpy(to_model_units(features, cols))
    labels, classes = None, None
    if label_column:
        labels, classes = _label_codes(frame[label_column], label_column)
    return Table(frame, cols, x, labels, classes, label_column, name, notes, dropped)


def _label_codes(series: pd.Series, name: str) -> tuple[Tensor, tuple[str, ...]]:
    if series.isna().any():
        raise VarfamError(
            f"the label column '{name}' has {int(series.isna().sum())} missing values; fill "
            "or drop those rows, or leave --label-column out"
        )
    levels = _levels(series, "categorical", None)
    index = {level_key(v): i for i, v in enumerate(levels)}
    codes = torch.tensor([index[level_key(v)] for v in series.tolist()], dtype=torch.long)
    return codes, tuple(str(v) for v in levels)


def describe_columns(
    columns: list[Column], x: Tensor | None = None, notes: dict[str, str] | None = None,
    dropped: dict[str, str] | None = None,
) -> str:
    """One line per column: name, type, levels or units, share missing (for the terminal).

    ``notes``: why a column has its type (shown after it); ``dropped``: the columns left
    out of the model and why (one line each). With either, a last line says how to
    override the inferred types.
    """
    notes, dropped = notes or {}, dropped or {}
    lines = []
    width = max(len(c.name) for c in [*columns, *(Column(name=n) for n in dropped)])
    for j, c in enumerate(columns):
        if c.type in DISCRETE_LEVELS:
            shown = ", ".join(str(v) for v in (c.levels or ())[:6])
            more = ", ..." if c.n_levels > 6 else ""
            what = f"{c.n_levels} levels ({shown}{more})"
        elif c.type in COUNTS:
            what = f"mean {c.loc:.4g}"
        else:
            what = ("log " if c.type == "positive" else "") + f"mean {c.loc:.4g}, sd {c.scale:.4g}"
        gone = f", {float(torch.isnan(x[:, j]).float().mean()):.0%} missing" \
            if x is not None else ""
        why = f"  [{notes[c.name]}]" if c.name in notes else ""
        lines.append(f"  {c.name:{width}s}  {c.type:11s} {what}{gone}{why}")
    for name, why in dropped.items():
        lines.append(f"  {name:{width}s}  {'left out':11s} {why} (not modelled)")
    if dropped or any(why != "declared" for why in notes.values()):
        lines.append("  (types inferred from the values; declare any column's type, or model "
                     "a column left out, with --column-types FILE: a .toml of name = \"type\")")
    return "\n".join(lines)


def configure_model(model: Any, data: Dataset) -> None:
    """Point a :class:`~varfam.config.ModelConfig` at its data.

    The likelihood and architecture left ``None`` are chosen from the data. A
    :class:`TableDataset` trains with the ``mixed`` likelihood over its columns and the
    ``tabular`` networks with the columns' levels (any other choice is refused: nothing
    else reads a table's columns and missing cells). Columns already recorded (a resumed
    run) are kept. Other data: ``bernoulli`` and ``mlp``; with a mask
    (``data.config.mask``) the ``masked`` likelihood around the chosen one, and the
    architecture's ``masked`` option.
    """
    if not isinstance(data, TableDataset):
        model.likelihood = model.likelihood or "bernoulli"
        model.arch = model.arch or "mlp"
        if data.config is not None and data.config.mask and model.likelihood != "masked":
            model.likelihood_options = {"base": model.likelihood,
                                        "options": dict(model.likelihood_options)}
            model.likelihood = "masked"
            model.arch_options["masked"] = True
        return
    for name, chosen, wanted in (("likelihood", model.likelihood, "mixed"),
                                 ("arch", model.arch, "tabular")):
        if chosen not in (None, wanted):  # nothing else reads a table's columns and holes
            raise VarfamError(
                f"{data.name} is a table: it trains with the {wanted} {name} (one factor per "
                f"column, missing cells left out), not {chosen}; leave --{name} out"
            )
    model.likelihood, model.arch = "mixed", "tabular"
    model.likelihood_options.setdefault("columns", [c.to_dict() for c in data.columns])
    model.arch_options.setdefault("levels", [c.n_levels for c in data.columns])


def data_summary(model: Any, data: Dataset) -> str | None:
    """What ``varfam train`` prints about a table's columns or a mask; ``None`` otherwise."""
    if isinstance(data, TableDataset):
        x = torch.cat([data.train, data.test])
        left = f" ({len(data.dropped)} left out)" if data.dropped else ""
        return f"table {data.name}: {x.shape[0]} rows, {len(data.columns)} columns{left}\n" \
            + describe_columns(list(data.columns), x, data.notes, data.dropped)
    if model.likelihood == "masked" and data.config is not None and data.config.mask:
        return f"missing values ({data.config.mask}): the {model.likelihood_options['base']} " \
            "likelihood scores the observed values only; the encoder sees the mask"
    return None


def read_table_dataset(
    path: str | Path,
    *,
    key: str | None = None,
    column_types: str | Path | dict | None = None,
    label_column: str | None = None,
    columns: list | None = None,
) -> TableDataset:
    """A table file as a :class:`TableDataset` (the fixed seeded 90/10 split)."""
    return load_table(path, column_types=column_types, label_column=label_column,
                      columns=columns, key=key).dataset()


def is_table_array(path: str | Path, key: str | None = None) -> bool:
    """Whether a .npy/.npz holds a 2-D float array with NaN cells (a table with holes).

    Anything unreadable is left to the array reader, which reports it; a large file is
    scanned in blocks of rows and the scan stops at the first NaN.
    """
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        if not isinstance(loaded, np.ndarray):
            with loaded:
                names = [k for k in loaded.files if k not in ("labels", "y")]
                name = key or (names[0] if len(names) == 1 else None)
                if name is None or name not in loaded.files:
                    return False
                loaded = loaded[name]
    except Exception:  # the array reader reports unreadable files
        return False
    if loaded.ndim != 2 or loaded.dtype.kind != "f":
        return False
    block = max(1, (32 << 20) // max(1, loaded.itemsize * loaded.shape[1]))
    return any(bool(np.isnan(loaded[i : i + block]).any())
               for i in range(0, loaded.shape[0], block))


# ---------------------------------------------------------------- named tables
def _sklearn_table(loader: str, label: str | None, **kwargs: Any) -> Table:
    import sklearn.datasets

    pd = pandas()
    bunch = getattr(sklearn.datasets, loader)(**kwargs)
    frame = pd.DataFrame(bunch.data, columns=[str(c) for c in bunch.feature_names])
    if label is not None:
        names = getattr(bunch, "target_names", None)
        target = bunch.target if names is None else np.asarray(names)[bunch.target]
        frame[label] = target
    else:
        frame["target"] = bunch.target
    return frame


def _named(frame: pd.DataFrame, name: str, label: str | None,
           column_types: Any = None, columns: list | None = None) -> TableDataset:
    return load_table(frame, column_types=column_types, label_column=label, columns=columns,
                      name=name).dataset()


@DATASETS.register(
    "breast-cancer",
    "scikit-learn's Wisconsin breast cancer table, 569 rows x 30 positive columns, labels "
    "malignant/benign; 513 train / 56 test",
)
def breast_cancer(*, data_dir: str | None = None, image_size: int | None = None,
                  column_types: Any = None, columns: list | None = None,
                  label_column: str | None = None) -> TableDataset:
    frame = _sklearn_table("load_breast_cancer", "diagnosis")
    return _named(frame, "breast-cancer", label_column or "diagnosis", column_types, columns)


@DATASETS.register(
    "wine",
    "scikit-learn's wine table, 178 rows x 13 chemical columns, labels 3 cultivars; "
    "161 train / 17 test",
)
def wine(*, data_dir: str | None = None, image_size: int | None = None,
         column_types: Any = None, columns: list | None = None,
         label_column: str | None = None) -> TableDataset:
    frame = _sklearn_table("load_wine", "cultivar")
    return _named(frame, "wine", label_column or "cultivar", column_types, columns)


@DATASETS.register(
    "diabetes",
    "scikit-learn's diabetes table in original units, 442 rows x 11 columns (age, sex, "
    "bmi, ..., the disease progression); 398 train / 44 test",
)
def diabetes(*, data_dir: str | None = None, image_size: int | None = None,
             column_types: Any = None, columns: list | None = None,
             label_column: str | None = None) -> TableDataset:
    frame = _sklearn_table("load_diabetes", None, scaled=False)
    frame = frame.rename(columns={"target": "progression"})
    return _named(frame, "diabetes", label_column, column_types, columns)


__all__ += ["read_table_dataset", "is_table_array", "breast_cancer", "wine", "diabetes",
            "pandas"]
