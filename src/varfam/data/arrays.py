"""NumPy arrays → :class:`Dataset`: layouts, value checks, and the ``.npy``/``.npz`` readers.

Layouts (decided by the number of dimensions; N is the number of examples):

- (N, D): vectors, kept as (N, D);
- (N, H, W): grey images, read as (N, 1, H, W);
- (N, C, H, W) with C = 1 or 3: channels first, kept;
- (N, H, W, C) with C = 1 or 3 (and a second axis that is not 1 or 3): channels
  last, transposed to (N, C, H, W). Channels first wins when both readings fit.

Values: ``bool`` → 0/1; integers (any width) must lie in 0..255 and are divided by
255; floats are kept as they are (cast to float32) and must be finite. Anything else
(complex, strings, objects, records) is refused. Files are opened with
``allow_pickle=False``; a ``.npy`` file is memory-mapped (``mmap_mode="r"``) and
read in chunks whose pages are released, so it is never held in memory whole. When
its float32 form exceeds :data:`varfam.data.mapped.IN_MEMORY_BYTES` (256 MiB) it is
not converted at all: the train and test parts are
:class:`~varfam.data.mapped.MappedRows`, read when indexed, which training streams
batch by batch. Arrays inside a ``.npz`` are read whole (zip members cannot be
mapped): save large data as ``.npy``.

>>> import numpy as np
>>> ds = from_array(np.zeros((10, 28, 28), np.uint8), None, "zeros", "an array")
>>> ds.data_shape, ds.train.shape[0], ds.test.shape[0]
((1, 28, 28), 9, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from varfam.data.base import (
    SPLIT_SEED,
    Dataset,
    held_out_count,
    one_line,
    resize_images,
    split_indices,
)
from varfam.data.mapped import MappedRows, row_reader
from varfam.errors import VarfamError

__all__ = [
    "LABEL_KEYS",
    "layout_of",
    "check_dtype",
    "check_values",
    "to_tensor",
    "check_labels",
    "check_factors",
    "from_array",
    "read_array_file",
]

#: Names of the array that holds the labels in a ``.npz`` file (first found wins).
LABEL_KEYS = ("labels", "y")
#: Names of the arrays of a ``.npz`` file that hold the factors (N, F) and their names (F,).
FACTOR_KEYS = ("factors", "factor_names")


def layout_of(shape: tuple[int, ...], source: str, min_examples: int = 2) -> str:
    """``"vectors"``, ``"grey"``, ``"nchw"`` or ``"nhwc"`` for an array of ``shape``.

    ``min_examples``: 2 for data still to be split into train and test, 1 for a part.
    """
    if len(shape) not in (2, 3, 4):
        raise VarfamError(
            f"{source} has shape {shape}; use (N, D) vectors, (N, H, W) grey images, "
            "or (N, C, H, W) / (N, H, W, C) images with C = 1 or 3"
        )
    if any(d == 0 for d in shape):
        raise VarfamError(f"{source} has shape {shape} with an empty dimension; it holds no data")
    if shape[0] < min_examples:
        raise VarfamError(
            f"{source} holds {shape[0]} example; a dataset needs at least 2 (train and test)"
        )
    if len(shape) == 2:
        return "vectors"
    if len(shape) == 3:
        return "grey"
    if shape[1] in (1, 3):
        return "nchw"
    if shape[3] in (1, 3):
        return "nhwc"
    raise VarfamError(
        f"{source} has shape {shape}: 4-D arrays need 1 or 3 channels, as (N, C, H, W) "
        "or (N, H, W, C)"
    )


def check_dtype(x: np.ndarray, source: str) -> None:
    """Refuse dtypes varfam cannot read (strings, complex, objects, records)."""
    if (x.dtype.kind in "uif" and x.dtype.names is None) or x.dtype.kind == "b":
        return
    raise VarfamError(
        f"{source} has dtype {x.dtype}; use uint8 (0..255), bool, or float values"
    )


#: Bytes (as float32, or the source's dtype if wider) read at a time when checking
#: or converting an array.
_CHUNK_BYTES = 32 << 20


def _chunks(x: np.ndarray, index: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Rows of ``x`` (``x[index]``, or all in order) about :data:`_CHUNK_BYTES` at a time,
    in ``x``'s dtype; a file-backed ``x`` is read from its file (never mapped whole)."""
    read = row_reader(x)
    row_bytes = max(1, x[:1].size * max(4, x.dtype.itemsize))  # as float32 at least
    rows = max(1, _CHUNK_BYTES // row_bytes)
    n = x.shape[0] if index is None else len(index)
    for i in range(0, n, rows):
        yield read(np.arange(i, min(i + rows, n)) if index is None else index[i : i + rows])


def check_values(x: np.ndarray, source: str) -> None:
    """Refuse dtypes varfam cannot read, integers outside 0..255, and floats that are not
    finite in float32; reads ``x`` once, in chunks (a mapped file is not held in memory)."""
    check_dtype(x, source)
    kind = x.dtype.kind
    if kind == "b" or not x.size:
        return
    lo, hi, nan, inf = None, None, False, False
    for chunk in _chunks(x):
        if kind in "ui":
            lo = min(int(chunk.min()), lo if lo is not None else 255)
            hi = max(int(chunk.max()), hi if hi is not None else 0)
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                wide = np.abs(chunk) > np.finfo(np.float32).max
            nan = nan or bool(np.isnan(chunk).any())
            inf = inf or bool(wide.any())
    if kind in "ui" and (lo < 0 or hi > 255):
        raise VarfamError(
            f"{source} holds integers from {lo} to {hi}, but integer data must be "
            "8-bit grey levels 0..255; rescale it, or save floats"
        )
    if nan or inf:
        if nan:
            raise VarfamError(
                f"{source} holds NaN values; if they mark missing values, train with --mask nan "
                "(the likelihood then scores the observed values only), else clean the data"
            )
        raise VarfamError(
            f"{source} holds infinite (or too large for float32) values; clean the data "
            "before training"
        )


def _converter(
    kind: str, layout: str, image_size: int | None, source: str
) -> Callable[[np.ndarray], Tensor]:
    """Raw rows (k, ...) of a checked array → float32 (k, C, H, W) or (k, D), resized."""

    def convert(x: np.ndarray) -> Tensor:
        if layout == "grey":
            x = x[:, None]
        elif layout == "nhwc":
            x = x.transpose(0, 3, 1, 2)
        out = x.astype(np.float32, order="C")  # always a copy: never backed by a mapped file
        if kind in "ui":
            np.divide(out, np.float32(255.0), out=out)
        return resize_images(torch.from_numpy(out), image_size, source)

    return convert


def to_tensor(x: np.ndarray, layout: str, source: str) -> Tensor:
    """A checked array (any layout) → float32 tensor (N, C, H, W) or (N, D), contiguous.

    Integers are divided by 255; floats are cast and must stay finite in float32.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
        out = _converter(x.dtype.kind, layout, None, source)(x)
    if x.dtype.kind == "f" and not torch.isfinite(out).all():
        bad = "NaN" if torch.isnan(out).any() else "infinite (or too large for float32)"
        raise VarfamError(f"{source} holds {bad} values; clean the data before training")
    return out


def _rows(
    x: np.ndarray, index: np.ndarray, convert: Callable[[np.ndarray], Tensor], mapped: bool
) -> Tensor | MappedRows:
    """Rows ``index`` of ``x``: a :class:`MappedRows` when ``mapped``, else one float32
    tensor filled chunk by chunk (never the whole part in two forms at once)."""
    first = convert(x[index[:1]] if len(index) else x[:1])
    data_shape = tuple(first.shape[1:])
    if mapped:
        return MappedRows(x, index, convert, data_shape)
    out = torch.empty((len(index), *data_shape), dtype=torch.float32)
    done = 0
    for chunk in _chunks(x, index):
        out[done : done + len(chunk)] = convert(chunk)
        done += len(chunk)
    return out


def check_labels(labels: np.ndarray, n: int, source: str) -> Tensor:
    """Labels as (N,) int64; a :class:`VarfamError` unless they are ``n`` integers."""
    if labels.ndim != 1 or labels.shape[0] != n or labels.dtype.kind not in "uib":
        raise VarfamError(
            f"{source} must hold {n} integer labels, one per example, but has shape "
            f"{labels.shape} and dtype {labels.dtype}; rename or fix that array"
        )
    return torch.from_numpy(np.asarray(labels).astype(np.int64))


def check_factors(
    factors: np.ndarray, names: np.ndarray | None, n: int, source: str
) -> tuple[Tensor, tuple[str, ...] | None]:
    """Factors as (N, F) float32 (a (N,) array is one factor) and their names; a
    :class:`VarfamError` unless there are ``n`` rows of finite numbers and one name each."""
    factors = np.asarray(factors)
    if factors.ndim == 1:
        factors = factors[:, None]
    if factors.ndim != 2 or factors.shape[0] != n or factors.dtype.kind not in "uifb":
        raise VarfamError(
            f"{source} must hold {n} rows of numbers (N, F), one per example, but has shape "
            f"{factors.shape} and dtype {factors.dtype}; fix that array"
        )
    values = torch.from_numpy(factors.astype(np.float32))
    if not torch.isfinite(values).all():
        raise VarfamError(f"{source} holds values that are not finite in float32; clean them")
    if names is None:
        return values, None
    names = np.asarray(names)
    if names.ndim != 1 or names.dtype.kind not in "US" or len(names) != factors.shape[1]:
        raise VarfamError(
            f"the factor names of {source} must be {factors.shape[1]} strings, one per "
            f"column, but have shape {names.shape} and dtype {names.dtype}"
        )
    return values, tuple(str(v.decode() if isinstance(v, bytes) else v) for v in names)


def from_array(
    x: np.ndarray,
    labels: np.ndarray | None,
    name: str,
    source: str,
    *,
    image_size: int | None = None,
    classes: tuple[str, ...] | None = None,
    labels_source: str | None = None,
    factors: np.ndarray | None = None,
    factor_names: np.ndarray | None = None,
    factors_source: str | None = None,
) -> Dataset:
    """An array (N, ...) → :class:`Dataset` with the fixed seeded 90/10 train/test split.

    Each part is converted from ``x`` chunk by chunk, so ``x`` is never held in its
    own dtype and float32 at once. A memory-mapped ``x`` whose float32 form exceeds
    :data:`varfam.data.mapped.IN_MEMORY_BYTES` is not read at all: its parts are
    :class:`~varfam.data.mapped.MappedRows` that read rows when indexed (training
    streams them batch by batch).
    """
    from varfam.data import mapped as mapping

    check_dtype(x, source)
    layout = layout_of(tuple(x.shape), source)
    check_values(x, source)
    n = x.shape[0]
    y = None
    if labels is not None:
        y = check_labels(labels, n, labels_source or f"the labels of {source}")
    f, names = None, None
    if factors is not None:
        f, names = check_factors(factors, factor_names, n, factors_source or f"the factors "
                                 f"of {source}")
    tr, te = split_indices(n, held_out_count(n), SPLIT_SEED)
    convert = _converter(x.dtype.kind, layout, image_size, source)
    mapped = False
    if isinstance(x, np.memmap):
        row = convert(x[:1])
        mapped = 4 * n * row[0].numel() > mapping.IN_MEMORY_BYTES
    parts = [_rows(x, idx.numpy(), convert, mapped) for idx in (tr, te)]
    return Dataset(
        name,
        parts[0],  # type: ignore[arg-type]  # a tensor or MappedRows
        parts[1],  # type: ignore[arg-type]
        None if y is None else y[tr],
        None if y is None else y[te],
        classes,
        tr,
        te,
        None if f is None else f[tr],
        None if f is None else f[te],
        names,
    )


def _choose(keys: list[str], key: str | None, path: Path) -> tuple[str, str | None]:
    """The data array's name and the labels array's name (or ``None``) in a ``.npz``."""
    if not keys:
        raise VarfamError(f"{path} holds no arrays")
    if key is not None and key not in keys:
        raise VarfamError(f"{path} has no array '{key}'; its arrays: {', '.join(keys)}")
    label = next((k for k in LABEL_KEYS if k in keys and k != key), None)
    if key is None:
        candidates = [k for k in keys if k != label and k not in FACTOR_KEYS]
        if not candidates:
            raise VarfamError(f"{path} holds only labels ('{label}'); it needs a data array")
        if len(candidates) > 1:
            raise VarfamError(
                f"{path} holds several arrays ({', '.join(candidates)}); "
                "choose one with --key NAME"
            )
        key = candidates[0]
    return key, label


def read_array_file(
    path: str | Path, *, key: str | None = None, image_size: int | None = None
) -> Dataset:
    """Read a ``.npy`` file (one array) or a ``.npz`` file (``key`` picks among several).

    In a ``.npz`` an array named ``labels`` or ``y`` (other than the data) gives the labels,
    one named ``factors`` (N, F) the known generating factors, and ``factor_names`` (F,)
    strings their names.
    """
    path = Path(path)
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # numpy and zipfile raise many types for corrupt files
        raise VarfamError(f"cannot read {path} as a NumPy .npy/.npz file: {one_line(e)}") from None
    if isinstance(loaded, np.ndarray):
        return from_array(loaded, None, path.stem, str(path), image_size=image_size)
    with loaded:
        try:
            name, label = _choose(list(loaded.files), key, path)
            x = loaded[name]
            labels = None if label is None else loaded[label]
            factors, names = (loaded[k] if k in loaded.files and k != name else None
                              for k in FACTOR_KEYS)
        except VarfamError:
            raise
        except Exception as e:  # a corrupt member, a pickled object array, ...
            raise VarfamError(f"cannot read {path}: {one_line(e)}") from None
    return from_array(
        x,
        labels,
        path.stem,
        f"array '{name}' of {path}",
        image_size=image_size,
        labels_source=f"array '{label}' of {path}",
        factors=factors,
        factor_names=names,
        factors_source=f"array 'factors' of {path}",
    )
