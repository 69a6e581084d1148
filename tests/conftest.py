"""Shared fixtures: a tiny trained run on `digits`, made once per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a busy
# machine spinning threads wait for descheduled siblings, and small operations were
# measured 25-80x slower (test_autoregressive's mass sums: 131 s against 4 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

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
