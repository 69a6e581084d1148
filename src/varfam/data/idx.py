"""The IDX format of MNIST and Fashion-MNIST, read with NumPy (plain or gzipped).

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <number of dims>``,
one big-endian uint32 per dimension, then the values in C order, big-endian:

====  =========  ====  ===========
code  dtype      code  dtype
====  =========  ====  ===========
0x08  uint8      0x0C  int32
0x09  int8       0x0D  float32
0x0B  int16      0x0E  float64
====  =========  ====  ===========

The reader checks the magic number, the dtype code and that the data is exactly
as long as the dimensions say. A file that starts with the gzip signature is
decompressed whatever its name (Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST
database of handwritten digits", 1998, describes the format).

>>> import numpy as np, tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "toy-idx1-ubyte")
>>> write_idx(path, np.arange(5, dtype=np.uint8))
>>> read_idx(path)
array([0, 1, 2, 3, 4], dtype=uint8)
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from varfam.data.arrays import check_labels, check_values, layout_of, to_tensor
from varfam.data.base import Dataset, one_line, resize_images
from varfam.errors import VarfamError

__all__ = ["read_idx", "write_idx", "IDX_FILES", "find_idx_files", "read_idx_folder"]

_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 24

#: The four files of an MNIST-style folder: role → accepted file names (each also ``.gz``).
IDX_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _read_upto(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes (fewer at the end of the file), read in chunks so a bogus ``n``
    never allocates more than the file holds."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        chunk = f.read(min(n - got, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _parse(f: BinaryIO, path: Path, plain_size: int | None) -> np.ndarray:
    head = _read_upto(f, 4)
    if len(head) < 4 or head[:2] != b"\0\0":
        raise VarfamError(f"{path} is not an IDX file (bad magic number {head.hex() or 'empty'})")
    code, ndim = head[2], head[3]
    if code not in _DTYPES:
        raise VarfamError(f"{path} is not a valid IDX file (unknown dtype code 0x{code:02x})")
    if ndim == 0:
        raise VarfamError(f"{path} is not a valid IDX file (it declares 0 dimensions)")
    raw_dims = _read_upto(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise VarfamError(f"{path} is truncated inside its IDX header")
    dims = struct.unpack(f">{ndim}I", raw_dims)
    dtype = _DTYPES[code]
    nbytes = math.prod(dims) * dtype.itemsize
    header = 4 + 4 * ndim
    if plain_size is not None and plain_size != header + nbytes:
        raise VarfamError(
            f"{path} holds {plain_size - header} data bytes but its header {dims} needs "
            f"{nbytes}; the file is truncated or corrupt"
        )
    data = _read_upto(f, nbytes)
    if len(data) < nbytes:
        raise VarfamError(
            f"{path} is truncated: its header {dims} needs {nbytes} data bytes, found {len(data)}"
        )
    if f.read(1):
        raise VarfamError(f"{path} has bytes after the {nbytes} its header {dims} declares")
    arr = np.frombuffer(data, dtype=dtype).reshape(dims)
    return arr if dtype.isnative else arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in the IDX file ``path`` (plain or gzipped), native byte order.

    A missing, unreadable, truncated or corrupt file raises :class:`VarfamError`.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            gzipped = f.read(2) == _GZIP_MAGIC
            f.seek(0)
            if not gzipped:
                return _parse(f, path, path.stat().st_size)
        with gzip.open(path, "rb") as g:
            return _parse(g, path, None)  # type: ignore[arg-type]
    except (OSError, EOFError, zlib.error) as e:  # includes gzip.BadGzipFile
        raise VarfamError(f"cannot read IDX file {path}: {one_line(e)}") from None


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0:
        raise ValueError(f"IDX cannot store dtype {array.dtype} with {array.ndim} dims")
    blob = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    blob += np.ascontiguousarray(array, dtype=_DTYPES[code]).tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(blob)


def find_idx_files(folder: str | Path) -> dict[str, Path]:
    """The MNIST-style files present in ``folder``: role → path (plain name before ``.gz``)."""
    folder = Path(folder)
    found: dict[str, Path] = {}
    for role, names in IDX_FILES.items():
        for name in names:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if role not in found and candidate.is_file():
                    found[role] = candidate
    return found


def _images(path: Path, image_size: int | None):
    x = read_idx(path)
    layout = layout_of(tuple(x.shape), str(path), min_examples=1)
    check_values(x, str(path))
    return resize_images(to_tensor(x, layout, str(path)), image_size, str(path))


def _labels(path: Path, n: int, images: Path):
    y = read_idx(path)
    if y.ndim == 1 and y.shape[0] != n:
        raise VarfamError(f"{path} holds {y.shape[0]} labels but {images} holds {n} images")
    return check_labels(y, n, str(path))


def read_idx_folder(
    folder: str | Path,
    name: str,
    *,
    image_size: int | None = None,
    classes: tuple[str, ...] | None = None,
) -> Dataset:
    """An MNIST-style folder (the four files of :data:`IDX_FILES`) with its own train/test split."""
    files = find_idx_files(folder)
    missing = [IDX_FILES[role][0] for role in IDX_FILES if role not in files]
    if missing:
        raise VarfamError(f"{folder} lacks {', '.join(missing)} (plain or .gz)")
    train = _images(files["train_images"], image_size)
    test = _images(files["test_images"], image_size)
    if train.shape[1:] != test.shape[1:]:
        raise VarfamError(
            f"train images {tuple(train.shape[1:])} and test images {tuple(test.shape[1:])} "
            f"in {folder} differ in shape; pass --image-size or fix the files"
        )
    train_y = _labels(files["train_labels"], train.shape[0], files["train_images"])
    test_y = _labels(files["test_labels"], test.shape[0], files["test_images"])
    return Dataset(name, train, test, train_y, test_y, classes)
