"""dSprites rendered here: the factor grid, the pixels, the cache, and factors that
travel with a data set (named or a user's .npz)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from varfam.data import Dataset, load_dataset, read_array_file
from varfam.data import dsprites as ds
from varfam.errors import VarfamError


def index(shape: int = 0, scale: int = 5, orientation: int = 0, x: int = 16, y: int = 16) -> int:
    return int(np.ravel_multi_index((shape, scale, orientation, x, y), ds.FACTOR_SIZES))


def test_factor_grid_follows_the_published_definitions() -> None:
    grid = ds.factor_grid()
    assert grid.shape == (737_280, 5) == (ds.N_IMAGES, len(ds.FACTOR_NAMES))
    assert ds.FACTOR_NAMES == ("shape", "scale", "orientation", "pos_x", "pos_y")
    expected = [[1, 2, 3], np.linspace(0.5, 1, 6), np.linspace(0, 2 * np.pi, 40),
                np.linspace(0, 1, 32), np.linspace(0, 1, 32)]
    for j, values in enumerate(expected):
        assert np.allclose(np.unique(grid[:, j]), values, atol=1e-6)
    # the original order: pos_y fastest, then pos_x, orientation, scale, shape
    assert np.allclose(grid[1] - grid[0], [0, 0, 0, 0, 1 / 31])
    assert np.allclose(grid[32] - grid[0], [0, 0, 0, 1 / 31, 0])
    assert (ds.factor_classes(np.array([index(2, 3, 7, 5, 9)])) == [[2, 3, 7, 5, 9]]).all()


def centroid(img: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(img)
    return float(cols.mean() + 0.5), float(rows.mean() + 0.5)  # x, y in pixel units


def test_area_grows_with_scale() -> None:
    for shape in range(3):
        imgs = ds.render(np.array([index(shape, s, orientation=3) for s in range(6)]))
        areas = imgs.reshape(6, -1).sum(1)
        assert (np.diff(areas) > 0).all(), (shape, areas)
        assert 1.5 < areas[-1] / areas[0] < 6  # about (1 / 0.5)^2 = 4


def test_square_has_the_stated_size_and_centre() -> None:
    img = ds.render(np.array([index(0, 5, 0, x=0, y=31)]))[0]
    assert img.sum() == 18 * 18
    assert centroid(img) == (16.0, 47.0)  # 16 + 31 * pos


def test_centroid_moves_one_pixel_per_position_step() -> None:
    for shape in range(3):
        xs = ds.render(np.array([index(shape, 2, 11, x=k, y=4) for k in (0, 1, 10, 31)]))
        cx = [centroid(i)[0] for i in xs]
        assert np.allclose(np.diff(cx), [1, 9, 21])
        ys = ds.render(np.array([index(shape, 2, 11, x=4, y=k) for k in (0, 5, 31)]))
        cy = [centroid(i)[1] for i in ys]
        assert np.allclose(np.diff(cy), [5, 26])
        assert len({centroid(i)[1] for i in xs}) == 1


def test_orientation_turns_the_sprite() -> None:
    ellipse = ds.render(np.array([index(1, 5, o) for o in (0, 10, 39)]))
    # long axis horizontal at 0, near vertical at 10 * 2pi / 39 ~ 92 degrees
    span = [(np.ptp(np.nonzero(i)[1]), np.ptp(np.nonzero(i)[0])) for i in ellipse]
    assert span[0][0] > 2 * span[0][1] and span[1][1] > 1.5 * span[1][0]
    assert (ellipse[0] == ellipse[2]).all()  # 0 and 2 pi: the same image, as in the original
    heart = ds.render(np.array([index(2, 5, 0)]))[0]
    rows = heart.sum(1).nonzero()[0]
    assert heart[rows[0]].sum() > heart[rows[-1]].sum()  # lobes on top, point below


def test_no_sprite_touches_the_border() -> None:
    for shape in range(3):
        m = ds.sprite_masks(shape)
        assert m.shape == (6, 40, 32, 32)
        assert not m[..., 0, :].any() and not m[..., -1, :].any()
        assert not m[..., :, 0].any() and not m[..., :, -1].any()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache folder whose file is first a truncated one (it must be rendered again);
    removed afterwards (377 MB)."""
    folder = tmp_path_factory.mktemp("dsprites")
    (folder / f"dsprites-v{ds.RENDER_VERSION}.npy").write_bytes(b"\x93NUMPY broken")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow  # kept out of make test's 4-minute budget
def test_named_dataset_with_factors(cache: Path) -> None:
    data = load_dataset("dsprites", data_dir=str(cache))
    assert data.data_shape == (1, 64, 64)
    assert data.train.shape[0] + data.test.shape[0] == ds.N_IMAGES
    assert data.test.shape[0] == 73_728
    assert data.factor_names == ds.FACTOR_NAMES
    assert data.train_factors.shape == (663_552, 5) and data.test_factors.shape == (73_728, 5)
    x = data.train[:64]  # the cached bits are the directly rendered pixels
    assert x.dtype == torch.float32 and set(x.unique().tolist()) <= {0.0, 1.0}
    rows = data.train_index[:64].numpy()
    assert torch.equal(x[:, 0], torch.from_numpy(ds.render(rows)).float())
    assert torch.equal(data.train_factors[:64], torch.from_numpy(ds.factor_grid(rows)))
    small = data.limit(100)
    assert small.train_factors.shape == (100, 5) and small.test_factors.shape == (10, 5)
    assert small.factor_names == ds.FACTOR_NAMES
    # the second load reads the cache (no rendering)
    path = cache / f"dsprites-v{ds.RENDER_VERSION}.npy"
    stamp = path.stat().st_mtime_ns
    again = load_dataset("dsprites", data_dir=str(cache), image_size=32)
    assert path.stat().st_mtime_ns == stamp and again.train[:2].shape == (2, 1, 32, 32)


def test_user_npz_with_factors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 8, 8), dtype=np.uint8)
    f = np.stack([np.arange(50), np.arange(50) % 3], axis=1)
    path = tmp_path / "with_factors.npz"
    np.savez(path, images=x, factors=f, factor_names=np.array(["id", "mod3"]))
    data = read_array_file(path)
    assert data.factor_names == ("id", "mod3")
    assert data.train_factors.dtype == torch.float32
    assert torch.equal(data.train_factors[:, 0].long(), data.train_index)
    assert torch.equal(data.test_factors[:, 0].long(), data.test_index)
    np.savez(tmp_path / "no_names.npz", x=x, factors=f[:, 0])
    plain = read_array_file(tmp_path / "no_names.npz")
    assert plain.factor_names is None and plain.train_factors.shape == (45, 1)


def test_factor_length_mismatch_is_one_line(tmp_path: Path) -> None:
    x = np.zeros((50, 8, 8), np.uint8)
    np.savez(tmp_path / "bad.npz", x=x, factors=np.zeros((49, 2)))
    with pytest.raises(VarfamError, match="must hold 50 rows") as e:
        read_array_file(tmp_path / "bad.npz")
    assert "\n" not in str(e.value)
    np.savez(tmp_path / "names.npz", x=x, factors=np.zeros((50, 2)), factor_names=np.array(["a"]))
    with pytest.raises(VarfamError, match="factor names"):
        read_array_file(tmp_path / "names.npz")
    with pytest.raises(VarfamError, match="one row of factors") as e:
        Dataset("toy", torch.zeros(4, 2), torch.zeros(2, 2), train_factors=torch.zeros(3, 1))
    assert "\n" not in str(e.value)
