"""Training settings chosen from the data when the user leaves them unset.

:class:`~varfam.config.TrainConfig` leaves ``objective``, ``epochs``, ``batch_size``,
``validation`` and ``patience`` at ``None`` (and IWAE's ``k`` and ``estimator`` out of
``objective_options``) unless they are given. :func:`resolved` fills them from the data,
once, at the start of :func:`varfam.train` (so Python and ``varfam train`` share it), and
the run's ``config.json`` records the filled values (``--resume``, ``report`` and
``compare`` read concrete settings) and their names (``chosen_from_data``, so that the
report tells them from what the user set). Anything set explicitly is kept as it is.

- **Images and vectors**: the ELBO, 30 epochs, batches of 128, no validation split,
  no early stopping (the defaults varfam always had).
- **Tables** (:class:`~varfam.data.TableDataset`): the recipe of ``benchmarks/tables.py``
  (MIWAE, Mattei & Frellsen 2019): the IWAE bound with k = :data:`TABLE_K` and DReG
  gradients; batches of 64, larger for large tables (:func:`table_batch_size`); a budget
  of about :data:`TABLE_STEPS` optimizer steps rather than a number of epochs, so that
  300 rows and a million rows both train sensibly (:func:`table_epochs`); a tenth of the
  training rows held out for validation (:func:`table_validation`), with early stopping
  after about :data:`TABLE_PATIENCE_STEPS` steps without a better validation ELBO; the
  saved and returned weights are the best on validation.

>>> import torch
>>> from varfam.config import TrainConfig
>>> from varfam.data import Dataset
>>> cfg = resolved(TrainConfig(), Dataset("vectors", torch.rand(300, 4), torch.rand(30, 4)))
>>> cfg.objective, cfg.epochs, cfg.batch_size, cfg.validation, cfg.patience
('elbo', 30, 128, 0, None)
>>> cfg.chosen_from_data
['batch_size', 'epochs', 'objective', 'validation']
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from varfam.config import TrainConfig
from varfam.data import Dataset, TableDataset

__all__ = ["resolved", "choices", "table_batch_size", "table_validation", "table_epochs",
           "table_patience", "TABLE_K", "TABLE_STEPS", "TABLE_PATIENCE_STEPS"]

#: Images and vectors: what an unset setting becomes.
IMAGE_DEFAULTS: dict[str, Any] = {"objective": "elbo", "epochs": 30, "batch_size": 128,
                                  "validation": 0, "patience": None}

#: Tables: IWAE's k and gradient estimator (``benchmarks/tables.py``: k 20 to 50, DReG).
TABLE_K = 20
TABLE_ESTIMATOR = "dreg"
#: Tables: the optimizer steps an unset ``epochs`` aims at (the benchmark's recipes train
#: about 3,000 steps).
TABLE_STEPS = 3000
#: Tables: the steps without a better validation ELBO after which training stops.
TABLE_PATIENCE_STEPS = 600
#: Tables: the share of the training rows held out for validation, and its bounds.
VALIDATION_SHARE = 0.1
MIN_VALIDATION = 5
MAX_VALIDATION = 10_000
#: Tables: the smallest table (training rows) that gets a validation split by default.
MIN_ROWS_FOR_VALIDATION = 50
#: Tables: the most epochs an unset ``epochs`` becomes (a table of a few dozen rows).
MAX_TABLE_EPOCHS = 1000


def table_batch_size(rows: int) -> int:
    """64 rows for tables up to about 22,600 training rows, then about rows / 250 (a
    power of two, at most 512, reached from about 90,500 rows).

    >>> [table_batch_size(n) for n in (300, 6_497, 32_561, 1_000_000)]
    [64, 64, 128, 512]
    """
    return int(min(512, max(64, 2 ** round(math.log2(max(rows, 1) / 250)))))


def table_validation(rows: int) -> int:
    """Rows held out for validation from ``rows`` training rows: a tenth, at least
    :data:`MIN_VALIDATION` and at most :data:`MAX_VALIDATION`; none below
    :data:`MIN_ROWS_FOR_VALIDATION` rows.

    >>> [table_validation(n) for n in (40, 160, 398, 29_304, 1_000_000)]
    [0, 16, 40, 2930, 10000]
    """
    if rows < MIN_ROWS_FOR_VALIDATION:
        return 0
    return int(min(MAX_VALIDATION, max(MIN_VALIDATION, round(VALIDATION_SHARE * rows))))


def table_epochs(rows: int, batch_size: int) -> int:
    """Epochs of ``rows`` training rows in batches of ``batch_size`` that make about
    :data:`TABLE_STEPS` steps (at least 1, at most :data:`MAX_TABLE_EPOCHS`).

    >>> [table_epochs(n, 64) for n in (40, 359, 5_800)], table_epochs(990_000, 512)
    ([1000, 500, 33], 2)
    """
    return int(min(MAX_TABLE_EPOCHS, max(1, round(TABLE_STEPS / _batches(rows, batch_size)))))


def table_patience(rows: int, batch_size: int) -> int:
    """Epochs without a better validation ELBO after which a table's training stops:
    about :data:`TABLE_PATIENCE_STEPS` steps, at least 2 epochs.

    >>> [table_patience(n, 64) for n in (160, 359, 5_800)]
    [200, 100, 7]
    """
    return int(max(2, math.ceil(TABLE_PATIENCE_STEPS / _batches(rows, batch_size))))


def _batches(rows: int, batch_size: int) -> int:
    return max(1, -(-rows // batch_size))


def choices(cfg: TrainConfig, data: Dataset) -> dict[str, Any]:
    """The settings :func:`resolved` fills in (those ``cfg`` leaves unset), by field name;
    ``objective_options`` holds only the options it adds."""
    table = isinstance(data, TableDataset)
    out: dict[str, Any] = {}
    if not table:
        out = {k: v for k, v in IMAGE_DEFAULTS.items() if getattr(cfg, k) is None}
        out.pop("patience", None)
        return out
    objective = cfg.objective if cfg.objective is not None else "iwae"
    if cfg.objective is None:
        out["objective"] = objective
    if objective == "iwae":
        added = {k: v for k, v in (("k", TABLE_K), ("estimator", TABLE_ESTIMATOR))
                 if k not in cfg.objective_options}
        if added:
            out["objective_options"] = added
    rows = int(data.train.shape[0])
    batch = cfg.batch_size if cfg.batch_size is not None else table_batch_size(rows)
    if cfg.batch_size is None:
        out["batch_size"] = batch
    validation = cfg.validation if cfg.validation is not None else table_validation(rows)
    if cfg.validation is None:
        out["validation"] = validation
    fitted = max(1, rows - validation)  # the rows an epoch goes through
    if cfg.epochs is None:
        out["epochs"] = table_epochs(fitted, batch)
    if cfg.patience is None and validation > 0:
        out["patience"] = table_patience(fitted, batch)
    return out


def resolved(cfg: TrainConfig, data: Dataset) -> TrainConfig:
    """``cfg`` with every setting it leaves unset chosen from ``data`` (the module doc);
    a config that sets them all comes back equal. Checked like any
    :class:`~varfam.config.TrainConfig` (e.g. ``patience`` without a validation split
    is refused in one line)."""
    chosen = choices(cfg, data)
    added = chosen.pop("objective_options", {})
    names = set(cfg.chosen_from_data) | set(chosen) | {f"objective_options.{k}" for k in added}
    if added:
        chosen["objective_options"] = {**cfg.objective_options, **added}
    return dataclasses.replace(cfg, **chosen, chosen_from_data=sorted(names))
