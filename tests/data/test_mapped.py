"""Large .npy files stay in their file: rows are read on demand (MappedRows), never mapped
whole, and training on them equals training on the same data in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import varfam
from varfam import VAE
from varfam.data.mapped import MappedRows, is_file_backed, row_reader
from varfam.training.batches import BatchSource, float_chunks, split_rows


@pytest.fixture
def stream_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat every file as too large to hold in memory."""
    monkeypatch.setattr("varfam.data.mapped.IN_MEMORY_BYTES", 100)


def _save(tmp_path: Path, x: np.ndarray, name: str = "x.npy") -> Path:
    np.save(tmp_path / name, x)
    return tmp_path / name


@pytest.mark.parametrize("shape", [(60, 6, 5), (60, 6, 5, 3), (60, 3, 6, 5), (60, 7)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64, np.bool_])
def test_a_large_file_loads_as_rows_equal_to_the_in_memory_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: tuple, dtype: type
) -> None:
    g = np.random.default_rng(0)
    x = (g.random(shape) * (255 if dtype == np.uint8 else 1)).astype(dtype)
    path = _save(tmp_path, x)
    held = varfam.load_dataset(str(path))
    monkeypatch.setattr("varfam.data.mapped.IN_MEMORY_BYTES", 100)
    mapped = varfam.load_dataset(str(path))
    assert isinstance(mapped.train, MappedRows) and isinstance(mapped.test, MappedRows)
    assert mapped.data_shape == held.data_shape and mapped.train.shape == held.train.shape
    torch.testing.assert_close(mapped.train.tensor(), held.train, rtol=0, atol=0)
    torch.testing.assert_close(mapped.test[:], held.test, rtol=0, atol=0)
    torch.testing.assert_close(mapped.train[7], held.train[7], rtol=0, atol=0)
    idx = torch.tensor([5, 0, 1, 2, 40])
    torch.testing.assert_close(mapped.train[idx], held.train[idx], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat(list(float_chunks(mapped.train, 7))), held.train)


def test_limits_and_views_read_only_what_they_keep(tmp_path: Path, stream_everything) -> None:
    path = _save(tmp_path, np.random.default_rng(1).random((80, 4, 4), dtype=np.float32))
    ds = varfam.load_dataset(str(path))
    only_test = ds.limit(None, 3)  # the training part is left as it is: not read
    assert only_test.train is ds.train and only_test.test.shape[0] == 3
    head, tail = split_rows(ds.train, 60)
    assert isinstance(head, MappedRows) and len(head) == 60 and len(tail) == len(ds.train) - 60
    torch.testing.assert_close(tail[:], ds.train[60:])


def test_training_on_mapped_rows_equals_training_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    x = (np.random.default_rng(2).random((300, 8, 8)) * 255).astype(np.uint8)
    path = _save(tmp_path, x)
    held = varfam.load_dataset(str(path))
    monkeypatch.setattr("varfam.data.mapped.IN_MEMORY_BYTES", 100)
    mapped = varfam.load_dataset(str(path))
    results = []
    for data in (held, mapped):
        torch.manual_seed(0)
        model = VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=2)
        results.append(varfam.train(model, data, epochs=2, batch_size=32, precision="fp32"))
    assert BatchSource(mapped.train, torch.device("cpu")).streamed
    for a, b in zip(results[0].history, results[1].history):
        assert a["train_loss"] == b["train_loss"] and a["test_elbo"] == b["test_elbo"]
    for a, b in zip(results[0].model.parameters(), results[1].model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_row_reader_reads_through_the_file_for_views_and_tensors(tmp_path: Path) -> None:
    x = np.arange(40 * 6, dtype=np.int16).reshape(40, 2, 3)
    mapped = np.load(_save(tmp_path, x), mmap_mode="r")
    where = np.array([3, 4, 5, 0, 39, 39, 12])
    for source, expect in ((mapped, x), (mapped[10:], x[10:]),
                           (torch.from_numpy(np.array(mapped)), x),  # a copy: plain indexing
                           (mapped[:, :, ::2], x[:, :, ::2])):  # not contiguous: the mapping
        read = row_reader(source)
        np.testing.assert_array_equal(read(where[where < len(expect)]),
                                      expect[where[where < len(expect)]])
    assert row_reader(mapped)(np.array([], dtype=np.int64)).shape == (0, 2, 3)
    with pytest.raises(IndexError):
        row_reader(mapped)(np.array([40]))
    assert is_file_backed(mapped) and not is_file_backed(np.array(mapped))


def _rss_file_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise LookupError


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux only")
def test_random_rows_do_not_map_the_file_into_memory(tmp_path: Path) -> None:
    """Through the mapping, 2,048 random rows of this 64 MB file mapped most of it (large
    page-cache folios); read from the file, the process holds only the rows."""
    rows = 20_000
    path = _save(tmp_path, np.zeros((rows, 28, 28), np.float32))
    mapped = np.load(path, mmap_mode="r")
    read = row_reader(mapped)
    before = _rss_file_kb()
    got = read(np.random.default_rng(0).integers(0, rows, 2048))
    assert got.shape == (2048, 28, 28)
    assert _rss_file_kb() - before < 8 * 1024  # KB; through the mapping it grew by tens of MB


def test_the_commands_work_on_a_run_trained_from_a_large_file(
    tmp_path: Path, stream_everything, capsys
) -> None:
    from varfam.cli import main

    path = _save(tmp_path, np.random.default_rng(3).random((400, 8, 8), dtype=np.float32))
    run = str(tmp_path / "run")
    assert main(["train", "--data", str(path), "--epochs", "1", "--hidden", "16",
                 "--latent-dim", "2", "--out", run, "--quiet", "--no-report"]) == 0
    assert {p.name for p in Path(run).glob("*.png")} >= {"latent.png", "interpolation.png"}
    assert main(["eval", run, "--iw", "5", "--json"]) == 0
    assert main(["encode", run, "-o", str(tmp_path / "z.npz")]) == 0
    with np.load(tmp_path / "z.npz") as f:
        assert sorted(f["index"].tolist()) == list(range(400))
    assert main(["report", run]) == 0
