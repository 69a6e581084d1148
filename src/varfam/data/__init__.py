"""Datasets: named ones (registered) and user files, all as float32 tensors.

``load_dataset(spec)`` takes a registered name (``varfam list``) or a path:

- ``.npy`` / ``.npz`` files (see :mod:`varfam.data.arrays` for layouts and values);
- an IDX file (``*idx*-ubyte``, plain or ``.gz``) holding one array;
- a folder with the four MNIST-style IDX files (keeps their own train/test split);
- any other folder: the images in it (see :mod:`varfam.data.images`);
- a table: ``.csv``, ``.tsv``, ``.parquet``, or a 2-D ``.npy``/``.npz`` with NaN
  cells (see :mod:`varfam.data.tables`), read as a :class:`TableDataset`.

User data without its own split gets a fixed seeded split: 10 % test, at least one.

>>> ds = load_dataset("digits")
>>> ds.data_shape, ds.train.shape[0], ds.test.shape[0]
((1, 8, 8), 1497, 300)

:func:`load_data` reads a whole :class:`~varfam.config.DataConfig` (the limits and the
labels kept as well), as ``varfam train`` does, and the dataset remembers it:

>>> from varfam.config import DataConfig
>>> ds = load_data(DataConfig(source="digits", limit=100, labelled=20))
>>> ds.train.shape[0], int((ds.train_labels >= 0).sum()), ds.config.limit
(100, 20, 100)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from varfam.config import DataConfig
from varfam.data import dsprites, named, tables  # noqa: F401  (register the named datasets and tables)
from varfam.data.arrays import from_array, read_array_file
from varfam.data.base import Dataset, check_image_size, split
from varfam.data.binarize import binarize_fixed, split_seed
from varfam.data.idx import find_idx_files, read_idx, read_idx_folder
from varfam.data.images import IMAGE_SUFFIXES, read_image_folder
from varfam.data.tables import TABLE_SUFFIXES, Table, TableDataset, load_table
from varfam.errors import VarfamError, suggest
from varfam.registry import DATASETS, accepted_options

__all__ = [
    "Dataset",
    "split",
    "load_dataset",
    "read_array_file",
    "read_idx",
    "read_idx_folder",
    "read_image_folder",
    "binarize_fixed",
    "split_seed",
    "Table",
    "TableDataset",
    "load_table",
    "load_data",
]


def _is_idx_name(name: str) -> bool:
    name = name.lower().removesuffix(".gz")
    return name.endswith(("ubyte", ".idx")) or "-idx" in name or ".idx" in name


def _read_path(path: Path, *, key: str | None, image_size: int | None,
               table: dict[str, Any]) -> Dataset:
    if path.is_dir():
        if len(find_idx_files(path)) == 4:
            return read_idx_folder(path, path.resolve().name, image_size=image_size)
        return read_image_folder(path, image_size=image_size)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES or (suffix in (".npy", ".npz") and (
            table or tables.is_table_array(path, key))):
        return tables.read_table_dataset(path, key=key, **table)
    if suffix in (".npy", ".npz"):
        return read_array_file(path, key=key, image_size=image_size)
    if _is_idx_name(path.name):
        return from_array(read_idx(path), None, path.name.split(".")[0], str(path),
                          image_size=image_size)
    if suffix in IMAGE_SUFFIXES:
        raise VarfamError(
            f"{path} is a single image; put the images in a folder and pass the folder to --data"
        )
    raise VarfamError(
        f"cannot tell what {path} holds; --data takes a dataset name, a .npy/.npz file, "
        "an IDX file (*-idx3-ubyte[.gz]), a folder of images or a table (.csv, .tsv, .parquet)"
    )


def load_dataset(
    spec: str,
    *,
    data_dir: str | None = None,
    image_size: int | None = None,
    key: str | None = None,
    label_column: str | None = None,
    column_types: str | None = None,
    columns: list[Any] | None = None,
    mask: str | None = None,
) -> Dataset:
    """Load a named dataset (``varfam list``) or a user path (see the module doc).

    ``data_dir``: the folder of a named dataset's files. ``image_size``: resize every
    image to ``image_size`` squared. ``key``: the array to read from a ``.npz`` with
    several. Tables: ``label_column``, ``column_types`` (a file), ``columns`` (a saved
    model's columns, :mod:`varfam.data.tables`). ``mask``: cells to hide (a ``.npy``
    of booleans, True = missing) or ``"nan"`` (:mod:`varfam.data.masks`). Options that
    do not apply to ``spec`` are ignored (a saved run passes its own along). Anything
    wrong with ``spec`` or its files raises :class:`VarfamError`.
    """
    image_size = check_image_size(image_size)
    table = {k: v for k, v in (("label_column", label_column), ("column_types", column_types),
                               ("columns", columns)) if v is not None}
    ds = _load(spec, data_dir, image_size, key, table, nan_missing=mask == "nan")
    if mask is not None and mask != "nan":
        from varfam.data.masks import apply_mask

        ds = apply_mask(ds, mask)
    config = DataConfig(source=str(spec), data_dir=data_dir, key=key, image_size=image_size,
                        label_column=label_column, column_types=column_types, mask=mask)
    return dataclasses.replace(ds, config=config)


def load_data(
    config: DataConfig | str, *, seed: int = 0, validation: int = 0,
    columns: list[Any] | None = None,
) -> Dataset:
    """The data a :class:`~varfam.config.DataConfig` describes, as training sees it.

    Reads ``config.source`` (:func:`load_dataset`, with the mask and the column types),
    keeps the first ``limit``/``test_limit`` examples, and, with ``labelled = N``, hides
    all training labels but N, balanced per class and chosen with ``seed`` among the
    examples not held out for ``validation`` (:func:`~varfam.data.labels.with_hidden_labels`;
    the training seed and validation size of a run, so the CLI and Python keep the same
    labels). ``columns``: a saved table model's columns. The result's ``config`` is
    ``config``. A plain string is taken as the source.
    """
    from varfam.data.labels import class_names, with_hidden_labels

    if isinstance(config, str):
        config = DataConfig(source=config)
    if config.source is None:
        raise VarfamError("this data has no source (it was given in memory); name the data, "
                          "e.g. --data FILE or DataConfig(source=...)")
    ds = load_dataset(config.source, data_dir=config.data_dir, image_size=config.image_size,
                      key=config.key, label_column=config.label_column,
                      column_types=config.column_types, columns=columns, mask=config.mask)
    if not isinstance(ds, TableDataset):
        for flag, value in (("--label-column", config.label_column),
                            ("--column-types", config.column_types)):
            if value is not None:
                raise VarfamError(
                    f"{flag} describes a table's columns, but {config.source} is not a table "
                    "(images and arrays take their labels from class folders or a labels "
                    f"array); leave {flag} out"
                )
    ds = ds.limit(config.limit, config.test_limit)
    if config.labelled is not None:
        ds = with_hidden_labels(ds, config.labelled, seed, len(class_names(ds)), validation)
    return dataclasses.replace(ds, config=config)


def _load(spec: str, data_dir: str | None, image_size: int | None, key: str | None,
          table: dict[str, Any], nan_missing: bool) -> Dataset:
    if spec in DATASETS:
        target = DATASETS.get(spec)
        accepted = accepted_options(target)
        return target(data_dir=data_dir, image_size=image_size,
                      **{k: v for k, v in table.items() if k in accepted})
    path = Path(str(spec)).expanduser()
    try:
        exists = bool(str(spec)) and path.exists()
    except (OSError, ValueError):  # a name too long, a NUL byte
        exists = False
    if not exists:
        raise VarfamError(
            f"'{spec}' is neither a known dataset{suggest(str(spec), DATASETS.names())} "
            f"({', '.join(DATASETS.names())}) nor an existing file or folder"
        )
    if nan_missing and path.suffix.lower() in (".npy", ".npz"):
        from varfam.data.masks import read_array_with_nan

        return read_array_with_nan(path, key=key, image_size=image_size)
    return _read_path(path, key=key, image_size=image_size, table=table)
