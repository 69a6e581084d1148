"""File readers: IDX (plain and gzipped), .npy/.npz, image folders, and their errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from varfam.data import load_dataset, read_idx
from varfam.data.base import held_out_count
from varfam.data.idx import write_idx
from varfam.errors import VarfamError

RNG = np.random.default_rng(0)


def fails(match: str, spec, **kw) -> str:
    with pytest.raises(VarfamError, match=match) as info:
        load_dataset(str(spec), **kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_idx_round_trip_every_dtype(tmp_path: Path, suffix: str, dtype: str) -> None:
    x = (RNG.random((3, 4, 5)) * 100).astype(dtype)
    write_idx(tmp_path / f"a-idx3-ubyte{suffix}", x)
    y = read_idx(tmp_path / f"a-idx3-ubyte{suffix}")
    assert y.dtype == np.dtype(dtype) and y.shape == (3, 4, 5)
    np.testing.assert_array_equal(x, y)


def test_idx_known_bytes(tmp_path: Path) -> None:
    # magic 0x00000801 (uint8, 1 dim), length 3, then the labels
    (tmp_path / "l").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9]))
    np.testing.assert_array_equal(read_idx(tmp_path / "l"), [7, 0, 9])
    # int16 big-endian: 0x0102 = 258
    (tmp_path / "s").write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 1, 1, 2]))
    assert read_idx(tmp_path / "s").tolist() == [258]


@pytest.mark.parametrize(
    "blob, match",
    [
        (b"", "bad magic"),
        (b"\x00\x01\x08\x01", "bad magic"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "unknown dtype code 0x07"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (bytes([0, 0, 8, 2, 0, 0, 0]), "truncated inside its IDX header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3]), "truncated or corrupt"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 2, 1, 2, 3]), "truncated or corrupt"),
        (bytes([0, 0, 8, 3, 255, 255, 255, 255] + [255] * 8), "truncated or corrupt"),
    ],
)
def test_idx_corrupt_plain(tmp_path: Path, blob: bytes, match: str) -> None:
    (tmp_path / "x").write_bytes(blob)
    with pytest.raises(VarfamError, match=match):
        read_idx(tmp_path / "x")


def test_idx_corrupt_gzip(tmp_path: Path) -> None:
    good = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2, 3, 4]))
    (tmp_path / "short.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2])))
    with pytest.raises(VarfamError, match="truncated: its header"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "long.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2])))
    with pytest.raises(VarfamError, match="bytes after"):
        read_idx(tmp_path / "long.gz")
    (tmp_path / "cut.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(VarfamError, match="cannot read IDX file"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "bad.gz").write_bytes(good[:10] + b"\xff" * 8 + good[18:])
    with pytest.raises(VarfamError, match="cut.gz|bad.gz"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(VarfamError, match="cannot read IDX file"):
        read_idx(tmp_path / "missing-idx1-ubyte")


def test_user_idx_file_and_mnist_style_folder(tmp_path: Path) -> None:
    images = RNG.integers(0, 256, (30, 6, 5), dtype=np.uint8)
    write_idx(tmp_path / "mine-idx3-ubyte.gz", images)
    ds = load_dataset(str(tmp_path / "mine-idx3-ubyte.gz"))
    assert ds.data_shape == (1, 6, 5) and ds.train.shape[0] == 27 and ds.test.shape[0] == 3
    assert ds.train_labels is None
    got = torch.cat([ds.train, ds.test]).mul(255).round().to(torch.uint8).flatten(1)
    # the split permutes rows but loses none: same multiset of rows
    assert sorted(map(bytes, got.numpy())) == sorted(map(bytes, images.reshape(30, -1)))

    folder = tmp_path / "mnistlike"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", images[:20])
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(20, dtype=np.uint8) % 10)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images[20:])
    write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8))
    ds = load_dataset(str(folder))  # keeps the files' own split, in order
    assert ds.train.shape == (20, 1, 6, 5) and ds.test.shape == (10, 1, 6, 5)
    torch.testing.assert_close(ds.test[:, 0], torch.from_numpy(images[20:] / 255.0).float())
    assert ds.test_labels.tolist() == list(range(10)) and ds.train_labels.dtype == torch.int64
    write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(9, dtype=np.uint8))
    fails("holds 9 labels but .* holds 10 images", folder)


# --------------------------------------------------------------------------- .npy / .npz


def test_npy_uint8_grey_images_are_scaled_and_split(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (50, 7, 9), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    ds = load_dataset(str(tmp_path / "x.npy"))
    assert ds.name == "x" and ds.data_shape == (1, 7, 9)
    assert ds.train.dtype == torch.float32 and ds.train.is_contiguous()
    assert (ds.train.shape[0], ds.test.shape[0]) == (45, 5) and ds.test_labels is None
    assert 0.0 <= float(ds.train.min()) and float(ds.train.max()) <= 1.0
    # every row is one of the input rows, exactly x / 255
    rows = {bytes(r) for r in x.reshape(50, -1)}
    back = torch.cat([ds.train, ds.test]).mul(255).round().to(torch.uint8).flatten(1).numpy()
    assert {bytes(r) for r in back} == rows
    # the same file gives the same split every time
    again = load_dataset(str(tmp_path / "x.npy"))
    assert torch.equal(again.train, ds.train) and torch.equal(again.test, ds.test)


def test_held_out_count() -> None:
    assert [held_out_count(n) for n in (2, 9, 10, 19, 20, 1000)] == [1, 1, 1, 1, 2, 100]


def test_npy_opens_memory_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "x.npy", np.zeros((10, 4), np.float32))
    seen = {}
    real = np.load

    def spy(*args, **kw):
        seen.update(kw)
        out = real(*args, **kw)
        seen["type"] = type(out)
        return out

    monkeypatch.setattr(np, "load", spy)
    ds = load_dataset(str(tmp_path / "x.npy"))
    assert seen["mmap_mode"] == "r" and seen["allow_pickle"] is False
    assert issubclass(seen["type"], np.memmap)
    assert ds.data_shape == (4,) and not isinstance(ds.train.numpy(), np.memmap)


def test_npy_layouts(tmp_path: Path) -> None:
    nhwc = RNG.random((10, 5, 6, 3), dtype=np.float32)
    np.save(tmp_path / "nhwc.npy", nhwc)
    ds = load_dataset(str(tmp_path / "nhwc.npy"))
    assert ds.data_shape == (3, 5, 6)
    full = torch.cat([ds.train, ds.test])
    want = torch.from_numpy(nhwc.transpose(0, 3, 1, 2).copy())
    # same rows up to the split's permutation: match each by its first value
    order = [int(torch.nonzero(want[:, 0, 0, 0] == v)[0]) for v in full[:, 0, 0, 0]]
    assert torch.equal(full, want[order])
    np.save(tmp_path / "nchw.npy", RNG.random((10, 1, 5, 6), dtype=np.float32))
    assert load_dataset(str(tmp_path / "nchw.npy")).data_shape == (1, 5, 6)
    np.save(tmp_path / "vec.npy", RNG.random((10, 12)))
    ds = load_dataset(str(tmp_path / "vec.npy"))
    assert ds.data_shape == (12,) and ds.train.dtype == torch.float32
    np.save(tmp_path / "bool.npy", RNG.random((10, 3, 3)) > 0.5)
    assert load_dataset(str(tmp_path / "bool.npy")).is_binary


def test_npy_floats_are_kept_as_they_are(tmp_path: Path) -> None:
    x = np.linspace(-3, 5, 40).reshape(20, 2)
    np.save(tmp_path / "f.npy", x)
    ds = load_dataset(str(tmp_path / "f.npy"))
    values = torch.cat([ds.train, ds.test]).flatten().sort().values
    torch.testing.assert_close(values, torch.from_numpy(x.flatten()).float())


@pytest.mark.parametrize(
    "array, match",
    [
        # NaN in images is a mistake (2-D float arrays with NaN are tables with missing
        # cells: tests/test_tables.py)
        (np.array([0.5, np.nan] * 10).reshape(10, 1, 1, 2), "NaN"),
        (np.array([0.5, np.inf] * 10).reshape(10, 2), "infinite"),
        (np.full((10, 2), 1e300), "infinite"),  # overflows float32
        (np.arange(20).reshape(10, 2) * 20, "integers from 0 to 380"),
        (-np.ones((10, 2), np.int8), "integers from -1"),
        (np.ones((10, 2), np.complex64), "dtype complex64"),
        (np.array([["a", "b"]] * 5), "dtype <U1"),
        (np.zeros(10), "shape \\(10,\\)"),
        (np.zeros((10, 2, 3, 4, 5)), "shape"),
        (np.zeros((10, 2, 5, 5)), "1 or 3 channels"),
        (np.zeros((1, 5)), "at least 2"),
        (np.zeros((10, 0)), "empty dimension"),
    ],
)
def test_npy_bad_contents(tmp_path: Path, array: np.ndarray, match: str) -> None:
    np.save(tmp_path / "bad.npy", array)
    fails(match, tmp_path / "bad.npy")


def test_npy_refuses_pickles_and_garbage(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    fails("cannot read .*obj.npy", tmp_path / "obj.npy")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    fails("cannot read .*junk.npy", tmp_path / "junk.npy")
    np.save(tmp_path / "cut.npy", np.zeros((100, 10), np.float32))
    blob = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(blob[:-100])
    fails("cannot read .*cut.npy", tmp_path / "cut.npy")


def test_npz_one_several_key_and_labels(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (20, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "one.npz", images=x)
    assert load_dataset(str(tmp_path / "one.npz")).data_shape == (1, 4, 4)

    labels = np.arange(20) % 3
    np.savez_compressed(tmp_path / "lab.npz", x=x, labels=labels)
    ds = load_dataset(str(tmp_path / "lab.npz"))
    assert ds.train_labels.dtype == torch.int64
    # labels follow their rows through the split
    for part, lab in ((ds.train, ds.train_labels), (ds.test, ds.test_labels)):
        for row, y in zip(part, lab):
            i = int(np.flatnonzero((x.reshape(20, -1) == (row * 255).round().flatten().numpy())
                                   .all(1))[0])
            assert labels[i] == y

    np.savez(tmp_path / "y.npz", data=x, y=labels)
    assert load_dataset(str(tmp_path / "y.npz")).test_labels is not None

    np.savez(tmp_path / "many.npz", a=x, b=x[:, :2], y=labels)
    msg = fails("several arrays", tmp_path / "many.npz")
    assert "a, b" in msg and "--key" in msg
    ds = load_dataset(str(tmp_path / "many.npz"), key="b")
    assert ds.data_shape == (1, 2, 4) and ds.train_labels is not None
    msg = fails("no array 'c'", tmp_path / "many.npz", key="c")
    assert "a, b, y" in msg

    np.savez(tmp_path / "onlyy.npz", y=labels)
    fails("only labels", tmp_path / "onlyy.npz")
    np.savez(tmp_path / "badlab.npz", x=x, labels=labels[:5])
    fails("array 'labels' .* must hold 20 integer labels", tmp_path / "badlab.npz")
    np.savez(tmp_path / "floatlab.npz", x=x, y=labels + 0.5)
    fails("integer labels", tmp_path / "floatlab.npz")
    np.savez(tmp_path / "empty.npz")
    fails("holds no arrays", tmp_path / "empty.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([None, 1], dtype=object))
    fails("cannot read .*obj.npz", tmp_path / "obj.npz")


def test_image_size_on_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "img.npy", RNG.random((10, 3, 8, 6), dtype=np.float32))
    ds = load_dataset(str(tmp_path / "img.npy"), image_size=4)
    assert ds.data_shape == (3, 4, 4)
    assert 0 <= float(ds.train.min()) and float(ds.train.max()) <= 1  # convex filter
    np.save(tmp_path / "vec.npy", RNG.random((10, 5)))
    fails("--image-size applies to images", tmp_path / "vec.npy", image_size=4)
    for bad in (0, -3, 2.5, True):
        fails("positive whole number", "digits", image_size=bad)


# --------------------------------------------------------------------------- image folders

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def shape_image(i: int, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Image.Image:
    """Image ``i``: a coloured rectangle or ellipse on black (converted to ``mode``)."""
    im = Image.new("RGB", size)
    draw = ImageDraw.Draw(im)
    box = (1 + i % 3, 1, size[0] - 2, size[1] - 2 - i % 2)
    (draw.rectangle if i % 2 else draw.ellipse)(box, fill=COLOURS[i % 4])
    im.putpixel((0, 0), COLOURS[i % 4])  # a known pixel
    return im.convert(mode)


def test_rgb_folder_with_class_subfolders(tmp_path: Path) -> None:
    for i in range(20):
        cls = ["circles", "boxes"][i % 2]
        (tmp_path / cls).mkdir(exist_ok=True)
        shape_image(i).save(tmp_path / cls / f"{i:02d}.png")
    (tmp_path / "boxes" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "junk.png").write_bytes(b"junk")
    ds = load_dataset(str(tmp_path))
    assert ds.data_shape == (3, 10, 12) and ds.train.dtype == torch.float32
    assert (ds.train.shape[0], ds.test.shape[0]) == (18, 2)
    assert ds.classes == ("boxes", "circles")
    for part, lab in ((ds.train, ds.train_labels), (ds.test, ds.test_labels)):
        for img, y in zip(part, lab):
            # the known pixel is one of the pure colours; boxes have odd i, colours 1 or 3
            colour = tuple(int(v) for v in (img[:, 0, 0] * 255).round())
            assert colour in COLOURS
            assert (COLOURS.index(colour) % 2 == 1) == (y == 0)
    assert set(torch.unique(ds.train).tolist()) <= {0.0, 1.0} | set(
        (torch.arange(256) / 255.0).tolist()
    )


def test_grey_folder_flat_has_no_labels(tmp_path: Path) -> None:
    for i in range(10):
        shape_image(i, mode="L").save(tmp_path / f"{i}.png")
    shape_image(10, mode="L").save(tmp_path / "10.jpg", quality=95)
    ds = load_dataset(str(tmp_path))
    assert ds.data_shape == (1, 10, 12) and ds.train_labels is None and ds.classes is None
    assert ds.train.shape[0] + ds.test.shape[0] == 11
    # one colour picture (RGBA here, a palette GIF too) makes the whole folder RGB
    shape_image(11, mode="RGBA").save(tmp_path / "11.png")
    shape_image(12, mode="P").save(tmp_path / "12.gif")
    assert load_dataset(str(tmp_path)).data_shape == (3, 10, 12)


def test_sixteen_bit_png(tmp_path: Path) -> None:
    for i, value in enumerate((0, 65535, 32768)):
        Image.fromarray(np.full((4, 5), value, np.uint16)).save(tmp_path / f"{i}.png")
    ds = load_dataset(str(tmp_path))
    values = sorted(float(v) for v in torch.cat([ds.train, ds.test])[:, 0, 0, 0])
    assert values == pytest.approx([0.0, 32768 / 65535, 1.0])
    assert load_dataset(str(tmp_path), image_size=3).data_shape == (1, 3, 3)


def test_mixed_sizes(tmp_path: Path) -> None:
    shape_image(0, (12, 10)).save(tmp_path / "a.png")
    shape_image(1, (20, 16)).save(tmp_path / "b.png")
    shape_image(2, (12, 10), "L").save(tmp_path / "c.png")
    msg = fails("differ in size", tmp_path)
    assert "a.png is 12x10" in msg and "b.png is 20x16" in msg and "--image-size" in msg
    ds = load_dataset(str(tmp_path), image_size=8)
    assert ds.data_shape == (3, 8, 8)
    full = torch.cat([ds.train, ds.test])
    assert 0 <= float(full.min()) and float(full.max()) <= 1


def test_folder_errors(tmp_path: Path) -> None:
    fails("found no images", tmp_path)
    (tmp_path / "readme.txt").write_text("hi")
    fails("found no images", tmp_path)
    shape_image(0).save(tmp_path / "only.png")
    fails("holds one image", tmp_path)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    fails("cannot read image .*broken.png", tmp_path)
    (tmp_path / "broken.png").write_bytes((tmp_path / "only.png").read_bytes()[:60])
    fails("cannot read image .*broken.png", tmp_path)
    fails("single image", tmp_path / "only.png")
    fails("neither a known dataset .* nor an existing file", tmp_path / "missing")
    fails("neither a known dataset", "")
    fails("did you mean 'mnist5k'", "mnist5")
    (tmp_path / "what.xyz").write_text("1,2\n")
    fails("cannot tell what", tmp_path / "what.xyz")
