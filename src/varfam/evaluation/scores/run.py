"""Scores of a saved run's data, row by row: what ``varfam score RUN`` calls.

:func:`score_run` opens a run folder, reads a data set (the run's own, or ``data``: a
name or a file) preprocessed as the run's training data was (binarized with the run's
fixed seeds where it binarized), and scores its rows with a registered method. Rows
come back in the order of the source with their index there (the row of a file, the
place in a folder's sorted list); a data set that comes with its own split lists its
training rows, then its test rows. For ``ratio`` without a ``background``, the
background model is fitted on the run's own training rows (not on the scored data).

>>> import varfam, tempfile
>>> from varfam.evaluation.scores.run import score_run
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> folder = tempfile.mkdtemp()
>>> _ = varfam.train(model, varfam.load_dataset("digits").limit(100), epochs=1, out=folder)
>>> rows = score_run(folder, split="test", method="elbo", k=2)
>>> rows.scores.shape, rows.index.shape, rows.labels is not None
(torch.Size([10]), torch.Size([10]), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from varfam.evaluation.scores.base import score

__all__ = ["ScoredRows", "score_run"]


@dataclass
class ScoredRows:
    """Scores of a data set's rows. ``index`` (N,) int64: each row's place in the source;
    ``labels`` (N,) int64 or None; ``scores`` (N,) float64, higher = more anomalous;
    ``classes``: the name of each label value, where known."""

    index: Tensor
    labels: Tensor | None
    scores: Tensor
    classes: tuple[str, ...] | None = None


def score_run(run: str | Path, data: str | None = None, *, split: str = "all",
              method: str = "nll", **options: Any) -> ScoredRows:
    """Score the rows of ``data`` (default: the run's own) with the run's model.

    ``split``: ``all`` (default), ``test`` or ``train``. ``method`` and ``options``: as for
    :func:`~varfam.evaluation.scores.score`. A model conditioned on labels reads the
    data's labels. The rows are :func:`varfam.runs.folder.run_rows`.
    """
    from varfam.runs.folder import open_run, run_dataset, run_rows, scored_inputs

    model, cfg = open_run(run)
    rows = run_rows(cfg, data, split)
    x, index, labels, ds = rows.x, rows.index, rows.labels, rows.dataset
    if method == "ratio" and options.get("background") is None and "train" not in options:
        own = run_dataset(cfg) if data is not None else ds
        train = scored_inputs(own, cfg.train, "train")
        options["train"] = train if isinstance(train, Tensor) else train[:]
    y = labels if model.uses_labels else None
    s = score(model, x, method, y=y, **options)
    return ScoredRows(index, labels, s, getattr(ds, "classes", None))
