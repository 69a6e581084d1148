"""Opening saved runs: the model, its config, and the test data it was measured on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from varfam.config import RunConfig, TrainConfig
from varfam.data import Dataset, binarize_fixed, load_data, load_dataset, split_seed
from varfam.data.binarize import Split
from varfam.errors import VarfamError
from varfam.model import VAE
from varfam.runs.checkpoint import load_model, load_run_config

__all__ = ["open_run", "run_dataset", "run_test_data", "scored_test_inputs", "scored_inputs",
           "run_eval_data", "RUN_FILES", "check_run_folder", "clear_run_folder"]


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

    The run's own data comes back as :func:`varfam.load_data` gives it, but with every
    label shown (a semi-supervised run's hidden labels are a training setting). A run
    whose ``config.json`` records no training (``cfg.train_recorded`` false) or whose
    data was given in memory (``source`` null) names no data: ``data`` must be given.
    """
    if data is None and (not cfg.train_recorded or cfg.data.source is None):
        why = ("records no training data (the model was saved without a TrainConfig)"
               if not cfg.train_recorded else "was trained on data given in memory")
        raise VarfamError(f"this run's config.json {why}; name the data with --data")
    m = cfg.model  # a table run converts any table with its saved columns
    columns = m.likelihood_options.get("columns") if m.likelihood == "mixed" else None
    if data is None:
        return load_data(dataclasses.replace(cfg.data, labelled=None), columns=columns)
    d = cfg.data  # another data set: read like the run's own, whole, without a file mask
    return load_dataset(data, data_dir=d.data_dir, image_size=d.image_size, key=d.key,
                        label_column=d.label_column, column_types=d.column_types,
                        columns=columns, mask="nan" if d.mask == "nan" else None)


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


#: What a finished or started run leaves in its folder (removed by --overwrite).
RUN_FILES = ("config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl",
              "report.html", "samples.png", "reconstructions.png", "interpolation.png",
              "latent.png", "trackers.json")


def check_run_folder(out: str | Path, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, is being trained, or holds a run (unless
    ``overwrite``: then :func:`clear_run_folder` deletes the old run's files when the new
    run starts, so nothing of it can be mistaken for the new one)."""
    out = Path(out)
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise VarfamError(f"--out {out}: {parent} is a file, not a folder; "
                              "choose another --out")
    if not out.is_dir():
        return
    if (out / ".lock").exists():  # a training of this folder still running says so first
        from varfam.runs.checkpoint import RunLock

        with RunLock(out):
            pass
    present = [name for name in RUN_FILES if (out / name).exists()]
    if present and not overwrite:
        raise VarfamError(
            f"--out {out} already holds a run ({present[0]}); continue it with "
            f"`varfam train --resume {out}`, choose a new --out, or pass --overwrite to replace it"
        )


def clear_run_folder(out: str | Path) -> None:
    """Delete the files a previous run left in ``out`` (:data:`RUN_FILES`)."""
    for name in RUN_FILES:
        (Path(out) / name).unlink(missing_ok=True)
