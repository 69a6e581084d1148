"""Labels of a dataset: their classes, and hiding all but N of them (semi-supervised data).

:func:`hide_labels` keeps the labels of ``keep`` training examples, balanced per
class and chosen with a seed, and sets every other label to ``-1``. It walks a
seeded permutation of the examples and keeps an example while its class still has
room; it stops at the last example it keeps, so the labels of every example after
that point in the permutation are never read (a test changes them and trains the
same weights).

>>> import torch
>>> y = torch.arange(40) % 4
>>> kept = hide_labels(y, 8, seed=0, n_classes=4)
>>> int((kept >= 0).sum()), torch.bincount(kept[kept >= 0]).tolist()
(8, [2, 2, 2, 2])
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from varfam.config import DataConfig
from varfam.data.base import Dataset
from varfam.errors import VarfamError

if TYPE_CHECKING:  # pragma: no cover
    from varfam.config import ModelConfig

__all__ = ["hide_labels", "labelled_indices", "class_names", "with_hidden_labels",
           "configure_labels", "LABEL_SOURCES"]

#: Where labels come from: what the messages about data without labels suggest.
LABEL_SOURCES = ("class sub-folders of images, an array named labels or y in a .npz, or a "
                 "table's column named with --label-column NAME")


def class_names(ds: Dataset) -> tuple[str, ...]:
    """One name per class of ``ds``: its ``classes``, else ``"0" … "C-1"`` for C = max label + 1.

    A :class:`VarfamError` when the data has no labels or a negative one.
    """
    hidden = ds.config is not None and ds.config.labelled is not None  # -1: a hidden label
    labels = [t[t != -1] if hidden else t for t in (ds.train_labels, ds.test_labels)
              if t is not None]
    labels = [t for t in labels if t.numel()]
    if not labels:
        raise VarfamError(
            f"{ds.name} has no labels; conditioning needs labelled data ({LABEL_SOURCES})"
        )
    low = min(int(t.min()) for t in labels)
    if low < 0:
        raise VarfamError(f"{ds.name} has a negative label ({low}); labels must be 0..C-1")
    high = max(int(t.max()) for t in labels)
    if ds.classes:
        if high >= len(ds.classes):
            raise VarfamError(
                f"{ds.name} has label {high} but names only {len(ds.classes)} classes"
            )
        return tuple(ds.classes)
    return tuple(str(c) for c in range(high + 1))


def labelled_indices(
    labels: Tensor, keep: int, seed: int, n_classes: int, among: int | None = None
) -> Tensor:
    """Indices (int64, in the order chosen) of ``keep`` examples balanced over ``n_classes``.

    Candidates are the first ``among`` examples (all by default). Every class gets
    ``keep // n_classes`` examples and ``keep % n_classes`` classes, chosen with the
    seed, one more. The walk over ``torch.randperm(among)`` under ``seed`` stops at the
    last example kept.
    """
    n = labels.shape[0] if among is None else min(among, labels.shape[0])
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < n_classes:
        raise VarfamError(
            f"--labelled must be at least the number of classes ({n_classes}), got {keep!r}"
        )
    if keep > n:
        raise VarfamError(f"--labelled {keep} is more than the {n} training examples")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)  # the walk: torch.randperm(n) under the seed
    quota = torch.full((n_classes,), keep // n_classes, dtype=torch.long)
    quota[torch.randperm(n_classes, generator=g)[: keep % n_classes]] += 1
    room = quota.tolist()
    chosen: list[int] = []
    for i in order.tolist():
        c = int(labels[i])  # read one label at a time: the walk stops at the last one kept
        if 0 <= c < n_classes and room[c] > 0:
            room[c] -= 1
            chosen.append(i)
            if len(chosen) == keep:
                break
    short = [c for c in range(n_classes) if room[c] > 0]
    if short:
        raise VarfamError(
            f"class {short[0]} has too few training examples for {keep} balanced labels; "
            "ask for fewer with --labelled"
        )
    return torch.tensor(chosen, dtype=torch.long)


def hide_labels(
    labels: Tensor, keep: int, seed: int, n_classes: int, among: int | None = None
) -> Tensor:
    """A copy of ``labels`` (N,) with all but :func:`labelled_indices` set to -1."""
    index = labelled_indices(labels, keep, seed, n_classes, among)
    out = torch.full_like(labels, -1)
    out[index] = labels[index]
    return out


def with_hidden_labels(
    ds: Dataset, keep: int, seed: int, n_classes: int, validation: int = 0
) -> Dataset:
    """``ds`` whose training labels are hidden but for ``keep`` (see :func:`hide_labels`).

    The labelled examples are chosen among the first ``N - validation`` training
    examples (the rest are held out for validation, unlabelled). Test labels stay.
    """
    if ds.train_labels is None:
        raise VarfamError(f"{ds.name} has no labels to keep; --labelled needs labelled data "
                          f"({LABEL_SOURCES})")
    among = ds.train_labels.shape[0] - validation
    hidden = hide_labels(ds.train_labels, keep, seed, n_classes, among)
    config = ds.config if ds.config is not None else DataConfig(source=None)
    return dataclasses.replace(ds, train_labels=hidden,
                               config=dataclasses.replace(config, labelled=keep))


def configure_labels(model: ModelConfig, ds: Dataset) -> None:
    """Fill in a model's label settings from its data.

    Data whose ``config.labelled`` is set (labels hidden but N, :func:`varfam.load_data`)
    makes the model semi-supervised (``condition="label"`` with a classifier); a model
    conditioned on labels takes its classes and their names from ``ds`` (a resumed run
    keeps its own).
    """
    if ds.config is not None and ds.config.labelled is not None:
        model.condition, model.classifier = "label", True
    if model.condition is None:
        return
    names = class_names(ds)
    if not model.n_classes:
        model.n_classes, model.classes = len(names), names
    elif len(names) > model.n_classes:
        raise VarfamError(
            f"{ds.name} has {len(names)} classes but the run was built for {model.n_classes}"
        )
