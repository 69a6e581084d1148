"""Opening saved runs: the model, its config, and the test data it was measured on."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import load_model, load_run_config
from .config import RunConfig
from .data import Dataset, load_dataset
from .model import VAE
from .train import binarize_fixed

__all__ = ["open_run", "run_dataset", "run_test_data"]


def open_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[VAE, RunConfig]:
    """Load a run folder's model (eval mode, on ``device``) and its validated config."""
    cfg = load_run_config(run_dir)
    return load_model(run_dir, device), cfg


def run_dataset(cfg: RunConfig, data: str | None = None) -> Dataset:
    """The dataset a run trained on (or ``data`` instead), with the run's limit applied."""
    t = cfg.train
    ds = load_dataset(data or t.data, data_dir=t.data_dir, image_size=t.image_size, key=t.data_key)
    return ds.limit(t.limit) if data is None else ds


def run_test_data(cfg: RunConfig, data: str | None = None) -> tuple[Tensor, Tensor | None]:
    """Test inputs exactly as the run evaluated them (binarized with the run's fixed seed)."""
    ds = run_dataset(cfg, data)
    x = ds.test
    if cfg.train.binarize != "none":
        x = binarize_fixed(x, cfg.train.seed + 1)
    return x, ds.test_labels
