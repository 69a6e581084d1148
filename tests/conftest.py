"""Shared fixtures: a tiny trained run on `digits`, made once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

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
