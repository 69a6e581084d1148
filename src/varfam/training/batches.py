"""Where training batches come from: one array, rows gathered per batch, float32 on the device.

The training loop never builds a per-example ``Dataset``/``DataLoader``: every
batch is one gather of rows by index from a single array, converted to float32
once. That array is either

- **resident**: a tensor in memory (moved to the GPU once when training there),
  the fast path used for every dataset that fits in :data:`varfam.data.mapped.IN_MEMORY_BYTES`; or
- **streamed**: a file-backed array larger than that (a
  :class:`~varfam.data.mapped.MappedRows` from :func:`varfam.load_dataset`, or an
  array from ``np.load(path, mmap_mode="r")`` or a tensor made from one), of which
  only each batch's rows are read from the file and converted
  (:func:`~varfam.data.mapped.row_reader`), so the resident memory stays bounded
  whatever the file's size; the operating system's page cache keeps recently read
  parts of the file.

Integer arrays hold 8-bit images: values are divided by 255 when converted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from varfam.data import mapped
from varfam.data.mapped import MappedRows, is_file_backed, split_rows

__all__ = [
    "BatchSource",
    "MappedRows",
    "is_file_backed",
    "float_chunks",
    "split_rows",
]



def _as_rows(x: Any) -> Any:
    """A file-backed array or tensor as :class:`MappedRows` (read from the file, never
    mapped whole); anything else unchanged."""
    if isinstance(x, MappedRows) or not is_file_backed(x):
        return x
    return MappedRows(x, np.arange(int(x.shape[0])), _to_float, tuple(x.shape[1:]))


def _binarized_uint8(x: Any, seed: int, chunk: int = 8192) -> Tensor:
    """Static binarization of an array, chunk by chunk, as 0/1 bytes.

    Equal to :func:`varfam.data.binarize_fixed` on the whole float array (CPU
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
    """Consecutive rows of ``x`` (tensor, array or :class:`MappedRows`), ``size`` at a
    time, as float32 CPU tensors; a file-backed ``x`` is read from its file chunk by chunk."""
    x = _as_rows(x)
    for i in range(0, int(x.shape[0]), size):
        yield _to_float(x[i : i + size])


class BatchSource:
    """An array of examples ``(N, *data_shape)`` served as float32 batches on ``device``.

    ``binarize_seed`` applies static binarization (one Bernoulli draw per value
    with that seed) once, up front. ``gather(idx)`` returns the rows ``idx``
    (a 1-D int64 tensor) as ``(len(idx), *data_shape)`` float32 on ``device``;
    ``chunks(size)`` walks the array in order. A file-backed array whose
    float32 form exceeds ``in_memory_bytes`` (default :data:`varfam.data.mapped.IN_MEMORY_BYTES`) is
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
        limit = mapped.IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
        x = _as_rows(x)  # file-backed: read from the file, never mapped whole
        self.streamed = isinstance(x, MappedRows) and float_bytes > limit
        if binarize_seed is not None:
            if self.streamed or not isinstance(x, Tensor):
                x, self.scale, self.streamed = _binarized_uint8(x, binarize_seed), 1.0, False
            else:
                from varfam.data import binarize_fixed

                x = binarize_fixed(x, binarize_seed)
        if self.streamed:
            self.array = x
        else:
            if isinstance(x, MappedRows):  # a small file: read into memory once
                x = x.tensor()
            t = x if isinstance(x, Tensor) else torch.from_numpy(np.array(x))
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
        rows = self.array[idx.cpu().numpy()]  # MappedRows: read from the file, float32
        return rows.to(self.device, non_blocking=True)

    def chunks(self, size: int) -> Iterator[Tensor]:
        """The whole array in order, ``size`` rows at a time, float32 on the device."""
        for i in range(0, self.n, size):
            if self.streamed:
                yield self.array[i : i + size].to(self.device)
            else:
                rows = self.array[i : i + size]
                rows = rows if rows.dtype == torch.float32 else _to_float(rows, self.scale)
                yield rows.to(self.device)

    def whole(self) -> Tensor | None:
        """The resident float32 tensor, or ``None`` when streamed or stored as integers."""
        if self.streamed or self.array.dtype != torch.float32 or self.array.device != self.device:
            return None
        return self.array

