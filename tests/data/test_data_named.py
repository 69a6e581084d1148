"""Named datasets: mnist5k, digits, fashion-mnist (Debian package), mnist (IDX folder, download)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from varfam.data import download, load_dataset
from varfam.data.idx import write_idx
from varfam.data.named import FASHION_MNIST_DIR
from varfam.errors import VarfamError
from varfam.registry import DATASETS


def test_all_four_are_registered_with_descriptions() -> None:
    for name in ("mnist5k", "digits", "fashion-mnist", "mnist"):
        entry = DATASETS.entry(name)
        assert entry.description and "\n" not in entry.description


@pytest.mark.slow  # reads and splits all 5,000 digits twice: about 6 s
def test_mnist5k_split_and_determinism() -> None:
    ds = load_dataset("mnist5k")
    assert ds.train.shape == (4500, 1, 28, 28) and ds.test.shape == (500, 1, 28, 28)
    assert ds.train.dtype == torch.float32 and ds.train_labels.dtype == torch.int64
    assert float(ds.train.min()) == 0.0 and float(ds.train.max()) == 1.0
    assert set(ds.train_labels.unique().tolist()) == set(range(10))
    assert ds.classes == tuple("0123456789")
    again = load_dataset("mnist5k")
    assert torch.equal(ds.train, again.train) and torch.equal(ds.test_labels, again.test_labels)
    # train and test are disjoint parts of the 5,000 (no image in both)
    train_rows = {bytes(r) for r in (ds.train.flatten(1) * 255).round().to(torch.uint8).numpy()}
    test_rows = {bytes(r) for r in (ds.test.flatten(1) * 255).round().to(torch.uint8).numpy()}
    assert len(train_rows & test_rows) <= 2  # MNIST holds a few exact duplicates at most


def test_digits_and_image_size() -> None:
    ds = load_dataset("digits")
    assert ds.train.shape == (1497, 1, 8, 8) and ds.test.shape == (300, 1, 8, 8)
    assert float(ds.train.max()) == 1.0 and float(ds.train.min()) == 0.0
    big = load_dataset("digits", image_size=16)
    assert big.data_shape == (1, 16, 16) and torch.equal(big.test_labels, ds.test_labels)
    # 2x bilinear upsampling with half-pixel centres gives every source pixel weights
    # (1/4, 3/4, 3/4, 1/4) per axis, edges clamped: the mean of each image is kept
    torch.testing.assert_close(big.test.mean((1, 2, 3)), ds.test.mean((1, 2, 3)))
    limited = ds.limit(100)
    assert limited.train.shape[0] == 100 and limited.test.shape[0] == 10
    assert limited.classes == ds.classes


@pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(),
    reason=f"{FASHION_MNIST_DIR} is absent (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_debian_package() -> None:
    ds = load_dataset("fashion-mnist")
    assert ds.train.shape == (60000, 1, 28, 28) and ds.test.shape == (10000, 1, 28, 28)
    assert ds.train.dtype == torch.float32
    assert float(ds.train.min()) == 0.0 and float(ds.train.max()) == 1.0
    assert torch.bincount(ds.train_labels).tolist() == [6000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    assert len(ds.classes) == 10 and ds.classes[9] == "Ankle boot"


def test_fashion_mnist_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(VarfamError) as info:
        load_dataset("fashion-mnist", data_dir=str(tmp_path / "nowhere"))
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg
    assert "\n" not in msg and "nowhere" in msg


def write_mnist_folder(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> dict:
    """Fake MNIST IDX files (random digits) in ``folder``: name → bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), arr)
    return arrays


def test_mnist_from_local_idx_files(tmp_path: Path) -> None:
    arrays = write_mnist_folder(tmp_path / "mnist", gz=False)
    ds = load_dataset("mnist", data_dir=str(tmp_path / "mnist"))
    assert ds.train.shape == (30, 1, 28, 28) and ds.test.shape == (10, 1, 28, 28)
    want = torch.from_numpy(arrays["t10k-images-idx3-ubyte"] / 255.0).float()[:, None]
    torch.testing.assert_close(ds.test, want)
    assert ds.train_labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert ds.name == "mnist" and ds.classes == tuple("0123456789")
    small = load_dataset("mnist", data_dir=str(tmp_path / "mnist"), image_size=14)
    assert small.data_shape == (1, 14, 14)


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local file:// mirror of fake gzipped MNIST files, with their checksums installed."""
    folder = tmp_path / "mirror"
    write_mnist_folder(folder, gz=True)
    sums = {}
    for f in folder.iterdir():
        blob = f.read_bytes()
        sums[f.name] = (hashlib.md5(blob).hexdigest(), hashlib.sha256(blob).hexdigest())
    monkeypatch.setattr(download, "MNIST_CHECKSUMS", sums)
    monkeypatch.setattr(download, "MNIST_MIRRORS", (
        (tmp_path / "empty-mirror").as_uri() + "/", folder.as_uri() + "/"
    ))
    return folder


def test_mnist_downloads_missing_files_and_verifies_them(mirror: Path, tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.mkdir()
    # one file present already (uncompressed): only the other three are fetched
    with gzip.open(mirror / "t10k-labels-idx1-ubyte.gz") as f:
        (target / "t10k-labels-idx1-ubyte").write_bytes(f.read())
    ds = load_dataset("mnist", data_dir=str(target))
    assert ds.train.shape == (30, 1, 28, 28) and ds.test_labels.shape == (10,)
    got = sorted(p.name for p in target.iterdir())
    assert got == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte",
                   "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_mnist_default_cache_folder(mirror: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ds = load_dataset("mnist")
    assert ds.test.shape == (10, 1, 28, 28)
    assert (tmp_path / "cache" / "varfam" / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_mnist_checksum_mismatch_is_refused(mirror: Path, tmp_path: Path, monkeypatch) -> None:
    sums = dict(download.MNIST_CHECKSUMS)
    md5, _ = sums["train-labels-idx1-ubyte.gz"]
    sums["train-labels-idx1-ubyte.gz"] = (md5, "0" * 64)
    monkeypatch.setattr(download, "MNIST_CHECKSUMS", sums)
    target = tmp_path / "data"
    with pytest.raises(VarfamError, match="train-labels-idx1-ubyte.gz .*checksum mismatch"):
        load_dataset("mnist", data_dir=str(target))
    # nothing half-written is left behind for the bad file
    assert not list(target.glob("train-labels*")) and not list(target.glob(".*part"))


def test_mnist_without_network_names_the_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(download, "MNIST_MIRRORS", ((tmp_path / "no-such-mirror").as_uri() + "/",))
    target = tmp_path / "put-them-here"
    with pytest.raises(VarfamError) as info:
        load_dataset("mnist", data_dir=str(target))
    msg = str(info.value)
    assert "\n" not in msg and "could not download" in msg and str(target) in msg
    assert "train-images-idx3-ubyte.gz" in msg and "--data-dir" in msg
