"""Opening saved runs: the model, its config, the test data it was measured on, and a
data set's rows in the source's order (:func:`run_rows`, what every per-row output reads)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from varfam.config import RunConfig, TrainConfig
from varfam.data import Dataset, binarize_fixed, load_data, load_dataset, split_seed
from varfam.data.binarize import Split
from varfam.errors import VarfamError
from varfam.model import VAE
from varfam.runs.checkpoint import load_model, load_run_config

__all__ = ["open_run", "run_dataset", "run_test_data", "scored_test_inputs", "scored_inputs",
           "run_eval_data", "Rows", "run_rows", "SPLITS", "is_other_data", "RUN_FILES",
           "check_run_folder", "clear_run_folder"]

#: Which rows of a data set: every row, its test split or its training split.
SPLITS = ("all", "test", "train")


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
    """Test inputs exactly as the run evaluated them (binarized with the run's fixed seed),
    and their labels. Data other than the run's own (:func:`is_other_data`) is used
    whole: every row, in the source's order (:func:`run_rows`)."""
    if is_other_data(cfg, data):
        rows = run_rows(cfg, data)
        return rows.x, rows.labels
    ds = run_dataset(cfg, data)
    return scored_test_inputs(ds, cfg.train), ds.test_labels


def is_other_data(cfg: RunConfig, data: str | None) -> bool:
    """Whether ``data`` names data other than the run's own (``None`` names the run's).

    Commands act on all the rows of other data by default, and on the run's own data
    as their ``--split`` says."""
    if data is None:
        return False
    own = cfg.data.source
    if own is None or data == own:
        return own is None
    try:
        return Path(data).expanduser().resolve() != Path(own).expanduser().resolve()
    except (OSError, ValueError):
        return True


@dataclass
class Rows:
    """A data set's rows in the source's order, as a run sees them.

    ``x`` (N, *data_shape) float32: each row preprocessed as the run sees it (binarized
    with its split's fixed seed where the run binarizes); ``index`` (N,) int64: each row's
    position in the source (the row of a file, the place in a folder's sorted list),
    increasing; a data set that comes with its own split lists its training rows, then
    its test rows, numbered in that order. ``split`` (N,) str: ``"train"`` or ``"test"``,
    the part of the seeded split each row is in. ``labels`` (N,) int64 and ``factors``
    (N, F) where the data has them; ``dataset``: the :class:`~varfam.data.Dataset` read.
    """

    x: Tensor
    index: Tensor
    split: np.ndarray
    labels: Tensor | None
    factors: Tensor | None
    dataset: Dataset


def run_rows(cfg: RunConfig, data: str | None = None, split: str | None = None, *,
             own_split: str = "all") -> Rows:
    """The rows of ``data`` (default: the run's own, with its limits) in the source's order.

    The one reader of every per-row output (classify, encode, score, ...): row ``i`` of
    what a command writes belongs to row ``index[i]`` of the source. ``split``: ``all``,
    ``test`` or ``train`` (the seeded split of the data); ``None`` takes every row of
    data other than the run's own (:func:`is_other_data`) and ``own_split`` of the run's.
    """
    if split is None:
        split = "all" if is_other_data(cfg, data) else own_split
    if split not in SPLITS:
        raise VarfamError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    ds = run_dataset(cfg, data)
    parts: list[Split] = [p for p in ("train", "test") if split in ("all", p)]
    xs = [scored_inputs(ds, cfg.train, p) for p in parts]
    x = torch.cat([v if isinstance(v, Tensor) else v[:] for v in xs])  # a large file: read
    labels = _joined([getattr(ds, f"{p}_labels") for p in parts])
    factors = _joined([getattr(ds, f"{p}_factors") for p in parts])
    where = np.concatenate([np.full(v.shape[0], p) for p, v in zip(parts, xs)])
    indexes = [getattr(ds, f"{p}_index") for p in parts]
    if all(i is not None for i in indexes):
        index = torch.cat(indexes).long()
        order = torch.argsort(index, stable=True)  # the source's order
        x, index, where = x[order], index[order], where[order.numpy()]
        labels = None if labels is None else labels[order]
        factors = None if factors is None else factors[order]
    else:  # a data set with its own split: training rows, then test rows
        offset = ds.train.shape[0] if parts == ["test"] else 0
        index = torch.arange(offset, offset + x.shape[0])
    return Rows(x, index, where, labels, factors, ds)


def _joined(parts: list[Tensor | None]) -> Tensor | None:
    return None if any(t is None for t in parts) else torch.cat(parts)  # type: ignore[arg-type]


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
    :class:`~varfam.data.Dataset`. Data other than the run's own (a name or path,
    :func:`is_other_data`) is measured whole: its test split is every row in the source's
    order, and its training split is empty (no probe). Otherwise the test split comes from
    :func:`varfam.runs.folder.run_test_data` (binarized with the run's fixed seed); the
    training split, used by the probe, is binarized once with the run's seed when
    training binarized.
    """
    binarize = cfg.train.binarize != "none"
    if isinstance(data, str) and is_other_data(cfg, data):  # every row is measured
        rows = run_rows(cfg, data)
        ds = rows.dataset  # no held-out rows are left to fit the probe on
        return Dataset(ds.name, rows.x[:0], rows.x, None, rows.labels, ds.classes,
                       test_factors=rows.factors, factor_names=ds.factor_names)
    if isinstance(data, Dataset):
        ds = data
        test = binarize_fixed(ds.test, split_seed(cfg.train.seed, "test")) if binarize else ds.test
    else:
        ds = run_dataset(cfg, data)
        test, _ = run_test_data(cfg, data)
    train = binarize_fixed(ds.train, split_seed(cfg.train.seed, "train")) if binarize else ds.train
    return Dataset(ds.name, train, test, ds.train_labels, ds.test_labels,
                   train_factors=ds.train_factors, test_factors=ds.test_factors,
                   factor_names=ds.factor_names)


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
