"""Opening saved runs: the model, its config, and the test data it was measured on."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from varfam.runs.checkpoint import load_model, load_run_config
from varfam.config import RunConfig, TrainConfig
from varfam.data import Dataset, binarize_fixed, load_dataset, split_seed
from varfam.data.binarize import Split
from varfam.errors import VarfamError
from varfam.model import VAE

__all__ = ["open_run", "run_dataset", "run_test_data", "scored_test_inputs", "scored_inputs",
           "run_eval_data"]


def open_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[VAE, RunConfig]:
    """Load a run folder's model (eval mode, on ``device``) and its validated config.

    ``run_dir`` may be a Hub run, ``hf://USER/REPO[@REVISION]`` (:mod:`varfam.runs.hub`).
    """
    from varfam.runs.hub import resolve_run

    run_dir = resolve_run(run_dir)
    cfg = load_run_config(run_dir)
    return load_model(run_dir, device), cfg


def run_dataset(cfg: RunConfig, data: str | None = None) -> Dataset:
    """The dataset a run trained on (or ``data`` instead), with the run's limits applied.

    A run whose ``config.json`` records no training (``cfg.train_recorded`` false)
    names no data: ``data`` must be given.
    """
    t = cfg.train
    if data is None and not cfg.train_recorded:
        raise VarfamError(
            "this run's config.json records no training data (the model was saved "
            "without a TrainConfig); name the data with --data"
        )
    m = cfg.model  # a table run converts any table with its saved columns
    columns = m.likelihood_options.get("columns") if m.likelihood == "mixed" else None
    mask = t.mask if data is None or t.mask == "nan" else None
    ds = load_dataset(data or t.data, data_dir=t.data_dir, image_size=t.image_size, key=t.data_key,
                      label_column=t.label_column, column_types=t.column_types, columns=columns,
                      mask=mask)
    return ds.limit(t.limit, t.test_limit) if data is None else ds


def run_test_data(cfg: RunConfig, data: str | None = None) -> tuple[Tensor, Tensor | None]:
    """Test inputs exactly as the run evaluated them (binarized with the run's fixed seed)."""
    ds = run_dataset(cfg, data)
    return scored_test_inputs(ds, cfg.train), ds.test_labels


def scored_test_inputs(ds: Dataset, train: TrainConfig) -> Tensor:
    """``ds.test`` as a run with ``train`` scores it: binarized once with the test seed
    when the run binarizes, else as it is."""
    return scored_inputs(ds, train, "test")


def scored_inputs(ds: Dataset, train: TrainConfig, split: Split) -> Tensor:
    """The ``train`` or ``test`` part of ``ds`` as a run with ``train`` sees it: binarized
    once with that split's seed when the run binarizes, else as it is."""
    x = ds.train if split == "train" else ds.test
    if train.binarize == "none":
        return x
    return binarize_fixed(x, split_seed(train.seed, split))


def run_eval_data(cfg: RunConfig, data: str | Dataset | None = None) -> Dataset:
    """A run's evaluation data: the test split exactly as in training, and the training split.

    ``data`` is a dataset name/path (default: the run's own) or a ready
    :class:`~varfam.data.Dataset`. The test split comes from
    :func:`varfam.runs.folder.run_test_data` (binarized with the run's fixed seed); the
    training split, used by the probe, is binarized once with the run's seed when
    training binarized.
    """
    binarize = cfg.train.binarize != "none"
    if isinstance(data, Dataset):
        ds = data
        test = binarize_fixed(ds.test, split_seed(cfg.train.seed, "test")) if binarize else ds.test
    else:
        ds = run_dataset(cfg, data)
        test, _ = run_test_data(cfg, data)
    train = binarize_fixed(ds.train, split_seed(cfg.train.seed, "train")) if binarize else ds.train
    return Dataset(ds.name, train, test, ds.train_labels, ds.test_labels)
