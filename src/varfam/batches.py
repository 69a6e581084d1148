"""Where training batches come from: one array, rows gathered per batch, float32 on the device.

The training loop never builds a per-example ``Dataset``/``DataLoader``: every
batch is one gather of rows by index from a single array, converted to float32
once. That array is either

- **resident**: a tensor in memory (moved to the GPU once when training there),
  the fast path used for every dataset that fits in :data:`IN_MEMORY_BYTES`; or
- **streamed**: a memory-mapped file (``np.load(path, mmap_mode="r")``) larger
  than that, of which only each batch's rows are read and converted. The pages
  the process maps are released every few batches (``madvise(MADV_DONTNEED)``,
  read-only file mappings only), so the resident memory stays bounded whatever
  the file's size; the operating system's page cache keeps recently read parts.

Integer arrays hold 8-bit images: values are divided by 255 when converted.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["BatchSource", "IN_MEMORY_BYTES", "is_file_backed", "float_chunks"]

#: Arrays whose float32 form is at most this many bytes are loaded into memory;
#: larger memory-mapped arrays are read batch by batch.
IN_MEMORY_BYTES = 1 << 30

#: Release a streamed array's mapped pages after this many gathered rows.
_RELEASE_EVERY_ROWS = 2048


def _address_and_size(x: Any) -> tuple[int, int]:
    if isinstance(x, Tensor):
        return x.data_ptr(), x.untyped_storage().nbytes()
    return x.__array_interface__["data"][0], x.nbytes


def _read_only_file_mapping(address: int) -> tuple[int, int] | None:
    """The ``(start, end)`` of the read-only file mapping holding ``address``, if any (Linux)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                start, end = (int(v, 16) for v in parts[0].split("-"))
                if start <= address < end:
                    named = len(parts) >= 6 and parts[5].startswith("/")
                    return (start, end) if named and "w" not in parts[1] else None
    except OSError:  # pragma: no cover - not Linux
        return None
    return None


def is_file_backed(x: Any) -> bool:
    """Whether ``x`` (a tensor or numpy array) lives in a read-only memory-mapped file."""
    if isinstance(x, np.memmap):
        return True
    address, size = _address_and_size(x)
    return size > 0 and _read_only_file_mapping(address) is not None


class _PageReleaser:
    """Drops the pages a read-only file mapping has made resident (they stay in the page cache)."""

    def __init__(self, x: Any) -> None:
        self.range: tuple[int, int] | None = None
        self.libc: Any = None
        address, _ = _address_and_size(x)
        found = _read_only_file_mapping(address)
        if found is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        try:
            self.libc = ctypes.CDLL(None, use_errno=True)
        except OSError:  # pragma: no cover
            return
        self.range = found

    def __call__(self) -> None:
        if self.range is not None:
            start, end = self.range
            self.libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start),
                              mmap.MADV_DONTNEED)


def _binarized_uint8(x: Any, seed: int, chunk: int = 8192) -> Tensor:
    """Static binarization of an array, chunk by chunk, as 0/1 bytes.

    Equal to :func:`varfam.train.binarize_fixed` on the whole float array (CPU
    Bernoulli draws are sequential in the generator), in a quarter of the memory.
    """
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(tuple(x.shape), dtype=torch.uint8)
    for i in range(0, x.shape[0], chunk):
        out[i : i + chunk] = torch.bernoulli(_to_float(x[i : i + chunk]), generator=g).to(
            torch.uint8
        )
    return out


def _to_float(rows: Any, scale: float | None = None) -> Tensor:
    """Rows (tensor or array) as a float32 CPU tensor; integers divided by 255 (or ``scale``)."""
    t = rows if isinstance(rows, Tensor) else torch.from_numpy(np.ascontiguousarray(rows))
    if t.is_floating_point():
        return t.float()
    return t.float().mul_(scale) if scale is not None else t.float().div_(255.0)


def float_chunks(x: Any, size: int) -> Iterator[Tensor]:
    """Consecutive rows of ``x`` (tensor or array), ``size`` at a time, as float32 CPU tensors.

    Pages of a memory-mapped ``x`` are released after each chunk.
    """
    release = _PageReleaser(x) if is_file_backed(x) else None
    for i in range(0, int(x.shape[0]), size):
        yield _to_float(x[i : i + size])
        if release is not None:
            release()


class BatchSource:
    """An array of examples ``(N, *data_shape)`` served as float32 batches on ``device``.

    ``binarize_seed`` applies static binarization (one Bernoulli draw per value
    with that seed) once, up front. ``gather(idx)`` returns the rows ``idx``
    (a 1-D int64 tensor) as ``(len(idx), *data_shape)`` float32 on ``device``;
    ``chunks(size)`` walks the array in order. A memory-mapped array whose
    float32 form exceeds ``in_memory_bytes`` (default :data:`IN_MEMORY_BYTES`) is
    streamed; anything else is held in memory.
    """

    def __init__(
        self,
        x: Any,
        device: torch.device,
        *,
        binarize_seed: int | None = None,
        in_memory_bytes: int | None = None,
    ) -> None:
        self.device = device
        self.n = int(x.shape[0])
        self.data_shape = tuple(int(s) for s in x.shape[1:])
        self.scale: float | None = None  # per-batch multiplier for integer arrays
        float_bytes = 4 * self.n * int(np.prod(self.data_shape))
        limit = IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
        self.streamed = is_file_backed(x) and float_bytes > limit
        self._release: _PageReleaser | None = None
        self._rows_since_release = 0
        if binarize_seed is not None:
            if self.streamed or not isinstance(x, Tensor):
                x, self.scale, self.streamed = _binarized_uint8(x, binarize_seed), 1.0, False
            else:
                from .train import binarize_fixed

                x = binarize_fixed(x, binarize_seed)
        if self.streamed:
            self.array = x
            self._release = _PageReleaser(x)
        else:
            t = x if isinstance(x, Tensor) else torch.from_numpy(np.array(x))
            if is_file_backed(t):  # a small mapped file: read it into memory once
                t = t.clone()
            if t.is_floating_point() and t.dtype != torch.float32:
                t = t.float()
            # onto the GPU once when it fits the budget; else rows travel per batch
            fits = device.type == "cpu" or t.element_size() * t.numel() <= limit
            self.array = t.to(device) if fits else t

    def __len__(self) -> int:
        return self.n

    @property
    def index_device(self) -> torch.device:
        """Where the indices given to :meth:`gather` are best kept."""
        return torch.device("cpu") if self.streamed else self.array.device

    def gather(self, idx: Tensor) -> Tensor:
        """Rows ``idx`` as float32 ``(len(idx), *data_shape)`` on the device."""
        if not self.streamed:
            rows = self.array.index_select(0, idx.to(self.array.device))
            rows = rows if rows.dtype == torch.float32 else _to_float(rows, self.scale)
            return rows.to(self.device, non_blocking=True)
        rows = self.array[idx.cpu().numpy()]
        self._rows_since_release += len(idx)
        if self._release is not None and self._rows_since_release >= _RELEASE_EVERY_ROWS:
            self._release()
            self._rows_since_release = 0
        return _to_float(rows, self.scale).to(self.device, non_blocking=True)

    def chunks(self, size: int) -> Iterator[Tensor]:
        """The whole array in order, ``size`` rows at a time, float32 on the device."""
        for i in range(0, self.n, size):
            if self.streamed:
                rows = _to_float(self.array[i : i + size], self.scale).to(self.device)
                if self._release is not None:
                    self._release()
                yield rows
            else:
                rows = self.array[i : i + size]
                rows = rows if rows.dtype == torch.float32 else _to_float(rows, self.scale)
                yield rows.to(self.device)

    def whole(self) -> Tensor | None:
        """The resident float32 tensor, or ``None`` when streamed or stored as integers."""
        if self.streamed or self.array.dtype != torch.float32 or self.array.device != self.device:
            return None
        return self.array

