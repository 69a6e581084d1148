"""Shared fixtures: the digits data, small VAEs, a tiny table, and a tiny trained run on
`digits` made once per test session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a busy
# machine spinning threads wait for descheduled siblings, and small operations were
# measured 25-80x slower (test_autoregressive's mass sums: 131 s against 4 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

import _models  # noqa: E402
import varfam  # noqa: E402

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch run of a small diagonal VAE on digits, written by the CLI."""
    from varfam.cli import main

    out = tmp_path_factory.mktemp("runs") / "digits"
    code = main(
        ["train", "--data", "digits", "--epochs", "2", "--hidden", "64", "--latent-dim", "4",
         "--out", str(out), "--quiet", "--seed", "3"]
    )
    assert code == 0
    return out


@pytest.fixture(scope="session")
def digits() -> varfam.Dataset:
    """scikit-learn's 8x8 digits: the first 600 training and 60 test examples."""
    return _models.digits(600)


@pytest.fixture
def make_vae() -> Callable[..., varfam.VAE]:
    """A factory of small seeded VAEs for the digits: ``make_vae(seed=0, **fields)``."""
    return _models.small_vae


@pytest.fixture(scope="session")
def tiny_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CSV of scikit-learn's wine table (178 rows, 13 columns) with a few holes."""
    import numpy as np
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame.drop(columns=["target"])
    frame.iloc[::9, 3] = np.nan
    path = tmp_path_factory.mktemp("table") / "wine.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test: two compete badly for the cores of a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
