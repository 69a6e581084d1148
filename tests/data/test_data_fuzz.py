"""Property-based: any bytes, shapes or dtypes give a valid Dataset or a VarfamError, never else."""

from __future__ import annotations

import gzip
import io
import tempfile
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from varfam.data import Dataset, load_dataset, read_idx
from varfam.errors import VarfamError

SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def check(ds: Dataset, n: int | None = None, unit: bool = True) -> None:
    """The contract every reader's result meets."""
    assert ds.train.dtype == ds.test.dtype == torch.float32
    assert ds.train.shape[1:] == ds.test.shape[1:] and ds.train.dim() in (2, 4)
    assert ds.train.shape[0] >= 1 and ds.test.shape[0] >= 1
    if n is not None:
        assert ds.train.shape[0] + ds.test.shape[0] == n
    for part in (ds.train, ds.test):
        assert torch.isfinite(part).all()
        if unit:
            assert float(part.min()) >= 0.0 and float(part.max()) <= 1.0
    for part, labels in ((ds.train, ds.train_labels), (ds.test, ds.test_labels)):
        assert labels is None or (labels.dtype == torch.int64 and labels.shape == part.shape[:1])


def outcome(fn, *args, **kw):
    """``fn``'s result, or ``None`` after a one-line VarfamError; any other exception fails."""
    try:
        result = fn(*args, **kw)
    except VarfamError as e:
        assert "\n" not in str(e) and str(e)
        event("VarfamError")
        return None
    event("valid")
    return result


# --------------------------------------------------------------------------- IDX

IDX_CODES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(code: int, dims: list[int], data: bytes) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + data


def well_formed(code: int, dims: list[int], seed: int) -> bytes:
    """An IDX file whose length matches its header (random values of the dtype)."""
    n = int(np.prod(dims)) * np.dtype(IDX_CODES[code]).itemsize
    return idx_bytes(code, dims, np.random.default_rng(seed).bytes(n))


idx_good = st.builds(
    well_formed, st.sampled_from(sorted(IDX_CODES)),
    st.lists(st.integers(0, 5), min_size=1, max_size=4), st.integers(0, 1000),
)
idx_files = st.one_of(
    st.binary(max_size=300),
    idx_good,
    st.tuples(idx_good, st.integers(0, 300)).map(lambda t: t[0][: t[1]]),  # truncated
    st.tuples(idx_good, st.binary(min_size=1, max_size=8)).map(lambda t: t[0] + t[1]),  # extra
    st.builds(  # any header, including huge dims and bad codes, then random data
        idx_bytes, st.integers(0, 255),
        st.lists(st.one_of(st.integers(0, 6), st.integers(0, 2**32 - 1)), max_size=4),
        st.binary(max_size=300),
    ),
)


@SETTINGS
@given(
    blob=idx_files,
    gz=st.booleans(),
)
def test_random_bytes_to_idx_reader(blob: bytes, gz: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f-idx3-ubyte"
        path.write_bytes(gzip.compress(blob) if gz else blob)
        arr = outcome(read_idx, path)
        if arr is not None:
            assert arr.dtype.isnative and 4 + 4 * arr.ndim + arr.nbytes == len(blob)
            ds = outcome(load_dataset, str(path))
            if ds is not None:
                check(ds, arr.shape[0], unit=arr.dtype.kind in "ui")


# --------------------------------------------------------------------------- .npy / .npz

wild_dtypes = st.one_of(
    hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
    hnp.boolean_dtypes(), hnp.complex_number_dtypes(), st.just(np.dtype("U2")),
)
wild = wild_dtypes.flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4))
)
plausible_shapes = hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=4).map(
    lambda s: (s[0] + 1, *s[1:])  # at least 2 examples
)
plausible = st.one_of(
    hnp.arrays(st.sampled_from([np.uint8, np.int16, np.int64]), plausible_shapes,
               elements=st.integers(0, 255)),
    hnp.arrays(st.sampled_from([np.float16, np.float32, np.float64]), plausible_shapes,
               elements=st.floats(-10, 10, width=16)),
    hnp.arrays(np.bool_, plausible_shapes),
)
arrays = st.one_of(wild, plausible)


@SETTINGS
@given(x=arrays, image_size=st.sampled_from([None, 3]))
def test_random_arrays_to_npy_reader(x: np.ndarray, image_size: int | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.npy"
        np.save(path, x)
        ds = outcome(load_dataset, str(path), image_size=image_size)
        if ds is None:
            return
        check(ds, x.shape[0], unit=x.dtype.kind in "uib")
        if image_size is None:
            assert ds.train.numel() // ds.train.shape[0] == x[0].size
            if x.dtype.kind == "f":  # floats kept as they are: same multiset of values
                got = np.sort(np.concatenate([ds.train.numpy().ravel(), ds.test.numpy().ravel()]))
                np.testing.assert_array_equal(got, np.sort(x.astype(np.float32).ravel()))


@SETTINGS
@given(
    members=st.dictionaries(st.sampled_from(["x", "images", "labels", "y", "b"]), arrays,
                            max_size=3),
    key=st.sampled_from([None, "x", "y", "zz"]),
)
def test_random_npz(members: dict, key: str | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.npz"
        np.savez(path, **members)
        ds = outcome(load_dataset, str(path), key=key)
        if ds is not None:
            check(ds, unit=False)


@SETTINGS
@given(blob=st.binary(max_size=400), suffix=st.sampled_from([".npy", ".npz"]),
       prefix=st.sampled_from([b"", b"\x93NUMPY\x01\x00", b"PK\x03\x04"]))
def test_random_bytes_to_array_reader(blob: bytes, suffix: str, prefix: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"x{suffix}"
        path.write_bytes(prefix + blob)
        ds = outcome(load_dataset, str(path))
        if ds is not None:
            check(ds, unit=False)


# --------------------------------------------------------------------------- image folders


def encode(mode: str, w: int, h: int, fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    if fmt == "JPEG" and mode not in ("L", "RGB"):
        im = im.convert("RGB")
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (OSError, ValueError):  # a mode this format cannot store
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    return buf.getvalue()


images = st.builds(
    encode,
    st.sampled_from(["L", "RGB", "RGBA", "P", "1", "LA", "I;16"]),
    st.integers(1, 6), st.integers(1, 6),
    st.sampled_from(["PNG", "BMP", "GIF", "JPEG", "TIFF"]),
    st.integers(0, 1000),
)
image_files = st.one_of(
    images,
    st.binary(max_size=200),
    st.tuples(images, st.integers(0, 400)).map(lambda t: t[0][: t[1]]),  # truncated
)


def write_folder(d: str, files: list) -> None:
    for i, (sub, suffix, blob) in enumerate(files):
        (Path(d) / sub).mkdir(exist_ok=True)
        (Path(d) / f"{sub}{i}{suffix}").write_bytes(blob)


def check_folder(d: str, n: int, image_size: int | None) -> Dataset | None:
    ds = outcome(load_dataset, d, image_size=image_size)
    if ds is not None:
        check(ds, n)
        assert ds.train.dim() == 4 and ds.train.shape[1] in (1, 3)
        if image_size is not None:
            assert ds.train.shape[2:] == (image_size, image_size)
    return ds


suffixes = st.sampled_from([".png", ".jpg", ".gif", ".tif", ".bmp"])
subfolders = st.sampled_from(["", "a/", "b/"])


@SETTINGS
@given(
    files=st.lists(st.tuples(subfolders, suffixes, images), min_size=2, max_size=5),
    image_size=st.sampled_from([None, 4]),
)
def test_random_valid_images_in_a_folder(files: list, image_size: int | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        write_folder(d, files)
        ds = check_folder(d, len(files), image_size)
        if image_size is not None:  # decodable files, all resized: always a dataset
            assert ds is not None
            with_labels = all(sub for sub, _, _ in files)
            assert (ds.train_labels is not None) == with_labels


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt EXIF, and so on
@SETTINGS
@given(
    files=st.lists(st.tuples(subfolders, suffixes, image_files), max_size=5),
    image_size=st.sampled_from([None, 4]),
)
def test_random_bytes_as_images_in_a_folder(files: list, image_size: int | None) -> None:
    with tempfile.TemporaryDirectory() as d:
        write_folder(d, files)
        check_folder(d, len(files), image_size)
