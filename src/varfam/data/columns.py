"""The columns of a table: their types, levels and standardization, and *model units*.

A table reaches the model as a float32 tensor (N, C) in **model units**, NaN where
a cell is missing:

- ``real``: ``(x - loc) / scale`` (``loc``, ``scale``: mean and standard deviation
  of the observed training cells);
- ``positive``: ``(log(x + offset) - loc) / scale`` (statistics of the log), so
  that the log-normal of the original units is a Gaussian in model units
  (``offset`` is 0, or for a column that holds zeros its smallest positive value);
- ``count`` (Poisson), ``count-nb`` (negative binomial): the counts themselves
  (``loc`` records their mean, which the likelihood uses as its starting rate);
- ``categorical``, ``ordinal``: the code ``0..K-1`` of the value in ``levels``
  (the original values, in order: the order matters for ``ordinal``).

A :class:`Column` records all of that, plus the column's name and original dtype,
so that a saved run turns model outputs back into the original units and
category names. A run's ``config.json`` keeps the list of columns in
``model.likelihood_options.columns`` (the ``mixed`` likelihood's option).

>>> c = Column(name="income", type="positive", loc=10.0, scale=2.0)
>>> float(c.to_model(np.array([np.exp(12.0)]))[0])
1.0
>>> Column(name="grade", type="ordinal", levels=3).levels
(0, 1, 2)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from varfam.errors import VarfamError, suggest

__all__ = [
    "Column",
    "COLUMN_TYPES",
    "TYPE_ALIASES",
    "CONTINUOUS",
    "COUNTS",
    "DISCRETE_LEVELS",
    "canonical_type",
    "parse_columns",
    "level_key",
]

#: The column types of the ``mixed`` likelihood.
COLUMN_TYPES = ("real", "positive", "count", "count-nb", "categorical", "ordinal")
#: Other names accepted for them (HI-VAE's ``pos``, ``cat``; short forms).
TYPE_ALIASES = {
    "pos": "positive",
    "cat": "categorical",
    "category": "categorical",
    "ord": "ordinal",
    "nb": "count-nb",
    "negative-binomial": "count-nb",
    "poisson": "count",
}
#: Types stored standardized (a Gaussian in model units).
CONTINUOUS = ("real", "positive")
#: Types stored as counts.
COUNTS = ("count", "count-nb")
#: Types stored as codes of ``levels``.
DISCRETE_LEVELS = ("categorical", "ordinal")


def canonical_type(name: str, where: str = "column type") -> str:
    """``name`` as one of :data:`COLUMN_TYPES` (aliases accepted); a VarfamError otherwise."""
    key = str(name).strip().lower().replace("_", "-")
    key = TYPE_ALIASES.get(key, key)
    if key not in COLUMN_TYPES:
        known = ", ".join(COLUMN_TYPES)
        raise VarfamError(
            f"unknown {where} '{name}'{suggest(key, COLUMN_TYPES)}; use one of {known} "
            "(or pos, cat, ord, nb)"
        )
    return key


def level_key(value: Any) -> str:
    """A canonical text for a level, so that ``3``, ``3.0`` and ``"3"`` are the same level."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return str(int(v)) if v.is_integer() else repr(v)
    text = str(value).strip()
    try:  # "3" read as text in one file and as a number in another
        v = float(text)
    except ValueError:
        return text
    return str(int(v)) if math.isfinite(v) and v.is_integer() else text


def _plain(value: Any) -> Any:
    """A level as a JSON value (numpy scalars become Python numbers)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return int(v) if v.is_integer() else v
    return str(value)


@dataclass
class Column:
    """One column of a table: name, type, levels and standardization (see the module doc).

    ``levels``: the original values in code order (categorical, ordinal), or an
    integer K for the levels ``0..K-1``. ``loc``/``scale``: the standardization of
    real and positive columns (of the log for positive), the mean count for counts.
    ``offset``: added to a positive column before its log. ``dtype``: the original
    column's pandas dtype, used when writing tables.
    """

    name: str = ""
    type: str = "real"
    levels: tuple[Any, ...] | None = None
    loc: float = 0.0
    scale: float = 1.0
    offset: float = 0.0
    dtype: str = "float64"

    def __post_init__(self) -> None:
        self.type = canonical_type(self.type, f"type of column '{self.name}'")
        if isinstance(self.levels, int) and not isinstance(self.levels, bool):
            self.levels = tuple(range(self.levels))
        if self.type in DISCRETE_LEVELS:
            if not self.levels:
                raise VarfamError(
                    f"column '{self.name}' is {self.type} but has no levels; give its levels "
                    "or declare it real or count"
                )
            self.levels = tuple(_plain(v) for v in self.levels)
            keys = [level_key(v) for v in self.levels]
            if len(set(keys)) != len(keys):
                raise VarfamError(f"column '{self.name}' lists a level twice: {list(self.levels)}")
        else:
            self.levels = None
        if not (math.isfinite(self.loc) and math.isfinite(self.scale) and self.scale > 0
                and math.isfinite(self.offset) and self.offset >= 0):
            raise VarfamError(
                f"column '{self.name}' has loc {self.loc}, scale {self.scale} and offset "
                f"{self.offset}; they must be finite, the scale positive, the offset >= 0"
            )

    # ------------------------------------------------------------ facts
    @property
    def n_levels(self) -> int:
        """K for categorical and ordinal columns, 0 otherwise."""
        return len(self.levels) if self.levels is not None else 0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["levels"] = None if self.levels is None else list(self.levels)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "column") -> Column:
        """A column from its ``config.json`` form, refusing unknown keys."""
        from varfam.config import from_dict

        if isinstance(data, Column):
            return data
        if isinstance(data, str):  # just a type
            return cls(type=data)
        if isinstance(data, dict) and type(data.get("levels")) is int:  # K: levels 0..K-1
            data = {**data, "levels": list(range(data["levels"]))}
        return from_dict(cls, data, where)

    # ------------------------------------------------------------ units
    def to_model(self, values: np.ndarray) -> np.ndarray:
        """Original numeric values (NaN = missing) → model units (float64); codes not here."""
        v = np.asarray(values, dtype=np.float64)
        if self.type == "real":
            return (v - self.loc) / self.scale
        if self.type == "positive":
            with np.errstate(divide="ignore", invalid="ignore"):
                return (np.log(v + self.offset) - self.loc) / self.scale
        return v

    def from_model(self, values: np.ndarray) -> np.ndarray:
        """Model units → original numeric values (codes stay codes), float64."""
        v = np.asarray(values, dtype=np.float64)
        if self.type == "real":
            return v * self.scale + self.loc
        if self.type == "positive":
            return np.exp(v * self.scale + self.loc) - self.offset
        return v

    def log_jacobian(self, u: np.ndarray) -> np.ndarray:
        """``log |du/dx|`` at model values ``u``: add it to a model-unit log-density (nats)
        to get the density of the original units (0 for counts and levels)."""
        u = np.asarray(u, dtype=np.float64)
        if self.type == "real":
            return np.full_like(u, -math.log(self.scale))
        if self.type == "positive":  # log(x + offset) = loc + scale * u
            return -math.log(self.scale) - (self.loc + self.scale * u)
        return np.zeros_like(u)


def parse_columns(columns: Any, n: int | None = None, where: str = "columns") -> list[Column]:
    """A list of :class:`Column` from dicts, type names or Columns; checks the count ``n``."""
    if columns is None:
        return [Column(name=f"x{i}") for i in range(n or 0)]
    if not isinstance(columns, (list, tuple)):
        raise VarfamError(f"{where} must be a list of columns, got {type(columns).__name__}")
    out = [Column.from_dict(c, f"{where}[{i}]") for i, c in enumerate(columns)]
    if n is not None and len(out) != n:
        raise VarfamError(f"{where} describes {len(out)} columns but the data have {n}")
    return out
