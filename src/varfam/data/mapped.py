"""Rows of arrays stored in files, read without holding the file in memory.

``np.load(path, mmap_mode="r")`` maps a ``.npy`` file into the process. Reading a
row through the mapping makes every page the kernel maps for it count in the
process's resident memory, and with the large page-cache folios of current Linux
kernels one random 3 kB row can map up to 2 MB: 2,048 random rows of a 2 GB file
mapped 1.7 GB here. So rows of a file-backed array are read with ``preadv`` into
ordinary buffers instead (:func:`row_reader`): the file stays in the operating
system's page cache, which is not the process's memory, and what the process holds
is the rows it asked for. Where the file cannot be found (not Linux, a deleted file,
rows that are not contiguous) the rows are read through the mapping and its pages
dropped after every read (``madvise(MADV_DONTNEED)``).

:class:`MappedRows` is a split of such an array (its rows ``index``), converted to
float32 when indexed: :func:`varfam.load_dataset` returns large ``.npy`` files in
this form and the training loop streams them batch by batch.

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "x.npy")
>>> np.save(path, np.arange(12, dtype=np.uint8).reshape(6, 2))
>>> read = row_reader(np.load(path, mmap_mode="r"))
>>> read(np.array([4, 0, 1])).tolist()
[[8, 9], [0, 1], [2, 3]]
"""

from __future__ import annotations

import ctypes
import mmap
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["MappedRows", "row_reader", "is_file_backed", "split_rows", "IN_MEMORY_BYTES"]

#: Data whose float32 form is larger than this many bytes is read batch by batch from
#: its file instead of being loaded (read at call time, so it can be changed).
IN_MEMORY_BYTES = 256 << 20

RowReader = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Mapping:
    start: int
    end: int
    offset: int  # of ``start`` in the file
    path: str
    writable: bool


def _address_and_size(x: Any) -> tuple[int, int]:
    if isinstance(x, Tensor):
        return x.data_ptr(), x.untyped_storage().nbytes()
    return x.__array_interface__["data"][0], x.nbytes


def _mapping(address: int) -> _Mapping | None:
    """The file mapping that holds ``address`` (from ``/proc/self/maps``), if any."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                start, end = (int(v, 16) for v in parts[0].split("-"))
                if start <= address < end:
                    path = parts[5].rstrip("\n") if len(parts) == 6 else ""
                    if not path.startswith("/"):
                        return None
                    return _Mapping(start, end, int(parts[2], 16), path, "w" in parts[1])
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return None
    return None


def is_file_backed(x: Any) -> bool:
    """Whether ``x`` (a tensor, a NumPy array or :class:`MappedRows`) lives in a read-only
    memory-mapped file."""
    if isinstance(x, (np.memmap, MappedRows)):
        return True
    address, size = _address_and_size(x)
    found = _mapping(address) if size > 0 else None
    return found is not None and not found.writable


class _PreadRows:
    """Rows (k, *row_shape) of a C-contiguous array in a file, read with ``preadv``.

    Consecutive positions are read in one call, so walking the rows in order costs a
    few large reads and a random batch one small read per row.
    """

    def __init__(self, path: str, offset: int, n: int, row_shape: tuple[int, ...],
                 dtype: np.dtype) -> None:
        self.offset, self.n, self.row_shape, self.dtype = offset, n, row_shape, dtype
        self.row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)

    def __call__(self, where: np.ndarray) -> np.ndarray:
        where = np.asarray(where, dtype=np.int64).reshape(-1)
        if where.size and (where.min() < 0 or where.max() >= self.n):
            raise IndexError(f"row index out of range for {self.n} rows")
        out = np.empty((len(where), self.row_bytes), dtype=np.uint8)
        if not len(where):
            return out.view(self.dtype).reshape(0, *self.row_shape)
        runs = np.flatnonzero(np.diff(where) != 1) + 1
        for lo, hi in zip(np.r_[0, runs], np.r_[runs, len(where)]):
            view = memoryview(out[lo:hi]).cast("B")
            at = self.offset + int(where[lo]) * self.row_bytes
            while view.nbytes:
                got = os.preadv(self.fd, [view], at)
                if got <= 0:
                    raise OSError(f"the file ended early (short read at byte {at})")
                view, at = view[got:], at + got
        return out.view(self.dtype).reshape(len(where), *self.row_shape)


class _MappedRead:
    """Rows read through the mapping, whose pages are dropped after every read."""

    def __init__(self, x: Any) -> None:
        self.x = x
        self.range: tuple[int, int] | None = None
        found = _mapping(_address_and_size(x)[0])
        if found is not None and hasattr(mmap, "MADV_DONTNEED"):
            try:
                self.libc = ctypes.CDLL(None, use_errno=True)
                self.range = (found.start, found.end)
            except OSError:  # pragma: no cover
                pass

    def __call__(self, where: np.ndarray) -> np.ndarray:
        rows = self.x[where]
        rows = rows.numpy() if isinstance(rows, Tensor) else np.array(rows)
        if self.range is not None:
            start, end = self.range
            self.libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start),
                              mmap.MADV_DONTNEED)
        return rows


def _numpy_dtype(x: Any) -> np.dtype:
    if isinstance(x, Tensor):
        return torch.empty(0, dtype=x.dtype).numpy().dtype
    return np.dtype(x.dtype)


def row_reader(x: Any) -> RowReader:
    """``read(where)``: rows ``where`` (int64 positions) of ``x`` as a NumPy array, in
    ``x``'s dtype, never leaving the file mapped in memory (see the module doc).

    ``x`` is a NumPy array or tensor (N, ...); for one that is not file-backed this is
    plain indexing.
    """
    if isinstance(x, MappedRows):
        raise TypeError("MappedRows already read their own rows")
    if not is_file_backed(x):
        return lambda where: np.asarray(x[where])
    contiguous = x.is_contiguous() if isinstance(x, Tensor) else x.flags.c_contiguous
    address, _ = _address_and_size(x)
    found = _mapping(address)
    if contiguous and found is not None and os.path.isfile(found.path):
        offset = found.offset + address - found.start
        dtype = _numpy_dtype(x)
        row_shape = tuple(int(s) for s in x.shape[1:])
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
        if os.path.getsize(found.path) >= offset + int(x.shape[0]) * row_bytes:
            return _PreadRows(found.path, offset, int(x.shape[0]), row_shape, dtype)
    return _MappedRead(x)


class MappedRows:
    """Rows ``index`` of a file-backed array, read and converted only when indexed.

    ``source``: an array (N, ...) in a file (``np.load(path, mmap_mode="r")``, or a
    tensor made from one); ``index``: (M,) int64 positions of this part's rows in it;
    ``convert``: raw rows (k, ...) in the source's dtype and layout → float32
    ``(k, *data_shape)``. Indexing with an int, a slice, or an int array or tensor
    reads those rows (:func:`row_reader`) and returns a float32 tensor, so ``x[:16]``
    and ``x[i : i + 1000]`` work as on a tensor of shape ``(M, *data_shape)``;
    :meth:`narrow` is a view that reads nothing and :meth:`tensor` reads all rows.
    """

    dtype = torch.float32

    def __init__(
        self,
        source: Any,
        index: np.ndarray,
        convert: Callable[[np.ndarray], Tensor],
        data_shape: tuple[int, ...],
        *,
        read: RowReader | None = None,
    ) -> None:
        self.source = source
        self.index = np.asarray(index, dtype=np.int64)
        self.convert = convert
        self.data_shape = tuple(int(s) for s in data_shape)
        self.read = read if read is not None else row_reader(source)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.index), *self.data_shape))

    def dim(self) -> int:
        return 1 + len(self.data_shape)

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"MappedRows(shape={tuple(self.shape)})"

    def __getitem__(self, key: Any) -> Tensor:
        if isinstance(key, Tensor):
            key = key.cpu().numpy()
        where = self.index[key]
        if where.ndim == 0:
            return self.convert(self.read(where.reshape(1)))[0]
        return self.convert(self.read(where))

    def narrow(self, dim: int, start: int, length: int) -> MappedRows:
        """Rows ``start .. start + length`` as a view (nothing is read), like ``Tensor.narrow``."""
        if dim != 0:
            raise ValueError("MappedRows narrows along the rows (dim 0) only")
        return MappedRows(self.source, self.index[start : start + length], self.convert,
                          self.data_shape, read=self.read)

    def tensor(self, chunk: int = 8192) -> Tensor:
        """All rows in one float32 tensor ``(M, *data_shape)``, read ``chunk`` rows at a time."""
        out = torch.empty(tuple(self.shape), dtype=torch.float32)
        for i in range(0, len(self), chunk):
            out[i : i + chunk] = self[i : i + chunk]
        return out


def split_rows(x: Any, at: int) -> tuple[Any, Any]:
    """``(x[:at], x[at:])`` as views of ``x`` (a tensor, an array or :class:`MappedRows`),
    so that splitting file-backed data reads nothing."""
    if isinstance(x, MappedRows):
        return x.narrow(0, 0, at), x.narrow(0, at, len(x) - at)
    return x[:at], x[at:]
