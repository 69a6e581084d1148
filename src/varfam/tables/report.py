"""Pictures of a table run: marginals and correlations of real against generated rows,
and the latent map coloured by a column (instead of the image grids of image runs).

- **Marginals**: per column, a histogram (numbers, original units) or the share of
  each level (categorical, ordinal) of the observed real cells and of as many rows
  drawn from the model (z ~ p(z), x ~ p(x|z)).
- **Correlations**: Pearson correlations between columns (levels as their codes) of
  the real rows (pairwise over the observed cells) beside those of the generated rows.
- **Latent map**: the latent means of the real rows (the first two principal axes
  when D > 2), coloured by the label column if the run has one, else by the first
  column.
- **Per-column errors** (:func:`column_errors`): each observed cell reconstructed from
  its row's latent mean (the decoder's point value, in original units), against the
  error of guessing the column's observed mean (or most common level).

``varfam train`` writes ``marginals.png``, ``correlations.png`` and ``latent.png``
into a table run's folder, and ``report.html`` shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from varfam.data.columns import DISCRETE_LEVELS, Column
from varfam.likelihoods.mixed import MixedLikelihood
from varfam.reporting.pictures import Picture, pca_2d, write_pictures

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from varfam.model import VAE

__all__ = ["is_table", "table_figures", "write_table_pictures", "column_errors"]

#: Columns shown in the marginals figure (the first ones).
MAX_COLUMNS = 16


def is_table(model: VAE) -> bool:
    """Whether ``model`` models tables (the ``mixed`` likelihood)."""
    return isinstance(model.likelihood, MixedLikelihood)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _values(x: np.ndarray, col: Column) -> np.ndarray:
    """A model-unit column → original units (codes for levels), NaN kept."""
    return x if col.type in DISCRETE_LEVELS else col.from_model(x)


def marginals_figure(columns: list[Column], real: np.ndarray, fake: np.ndarray) -> Figure:
    plt = _pyplot()
    shown = columns[:MAX_COLUMNS]
    ncol = min(4, len(shown))
    nrow = -(-len(shown) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.4 * nrow), squeeze=False)
    for j, col in enumerate(shown):
        ax = axes[j // ncol][j % ncol]
        r = _values(real[:, j], col)
        r = r[~np.isnan(r)]
        f = _values(fake[:, j], col)
        if col.type in DISCRETE_LEVELS:
            k = col.n_levels
            pos = np.arange(k)
            ax.bar(pos - 0.2, np.bincount(r.astype(int), minlength=k)[:k] / max(len(r), 1),
                   0.4, label="real")
            ax.bar(pos + 0.2, np.bincount(f.astype(int), minlength=k)[:k] / max(len(f), 1),
                   0.4, label="generated")
            names = [str(v)[:8] for v in (col.levels or ())]
            step = max(1, k // 8)
            ax.set_xticks(pos[::step], names[::step], fontsize=7)
        else:
            lo, hi = np.percentile(np.concatenate([r, f]), [0.5, 99.5])
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
            ax.hist(r, bins, density=True, alpha=0.5, label="real")
            ax.hist(f, bins, density=True, alpha=0.5, label="generated")
            ax.tick_params(labelsize=7)
        ax.set_title(f"{col.name} ({col.type})", fontsize=8)
    for j in range(len(shown), nrow * ncol):
        axes[j // ncol][j % ncol].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _correlation(x: np.ndarray) -> np.ndarray:
    """Pearson correlations (C, C) over the pairwise observed cells of x (N, C)."""
    from varfam.data.tables import pandas

    return pandas().DataFrame(x).corr().to_numpy()


def correlations_figure(columns: list[Column], real: np.ndarray, fake: np.ndarray) -> Figure:
    plt = _pyplot()
    names = [c.name[:12] for c in columns]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, x, title in ((axes[0], real, "real rows"), (axes[1], fake, "generated rows")):
        image = ax.imshow(np.nan_to_num(_correlation(x)), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(title)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
    fig.colorbar(image, ax=axes, shrink=0.8)
    return fig


def _known_labels(model: VAE, labels: Tensor | None) -> Tensor | None:
    """The labels a run conditioned on labels reads (``None`` when it reads none, or some
    are hidden and its classifier q(y|x) gives them)."""
    if not model.uses_labels or labels is None or bool((labels < 0).any()) or not len(labels):
        return None
    return labels


def latent_figure(model: VAE, x: Tensor, labels: Tensor | None) -> tuple[Figure, str]:
    from varfam.evaluation.bounds import latent_locations

    plt = _pyplot()
    z = latent_locations(model, x, y=_known_labels(model, labels))
    if z.shape[1] > 2:
        z = pca_2d(z)[0]
    elif z.shape[1] == 1:
        z = torch.cat([z, torch.zeros_like(z)], 1)
    columns = list(model.likelihood.columns)
    if labels is not None:
        colour, what = labels.numpy().astype(float), "the label"
    else:
        colour = _values(x[:, 0].double().numpy(), columns[0])
        what = f"column {columns[0].name}"
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    seen = ~np.isnan(colour)
    ax.scatter(z[~seen, 0], z[~seen, 1], s=6, c="lightgrey", label="missing")
    points = ax.scatter(z[seen, 0], z[seen, 1], s=6, c=colour[seen], cmap="viridis")
    fig.colorbar(points, ax=ax, label=what)
    ax.set_xlabel("z1" if model.latent_dim <= 2 else "PC 1")
    ax.set_ylabel("z2" if model.latent_dim <= 2 else "PC 2")
    fig.tight_layout()
    return fig, what


@torch.no_grad()
def table_figures(model: VAE, x: Tensor, labels: Tensor | None, seed: int = 0) -> list[Picture]:
    """The marginals, correlations and latent map of ``x`` (N, C) (see the module doc), as
    :class:`~varfam.reporting.pictures.Picture` s; drawn in eval mode with torch's random
    state forked and seeded by ``seed``."""
    from varfam.tables.imputation import draw_rows, table_columns

    columns = table_columns(model)
    known = _known_labels(model, labels)
    with model.evaluating(seed):
        m = max(x.shape[0], 500)  # a run conditioned on labels: the real rows' classes
        y = None if known is None else known[torch.randint(len(known), (m,))]
        fake, _ = draw_rows(model, m, y)
        real, gen = x.double().cpu().numpy(), fake.double().cpu().numpy()
        latent, what = latent_figure(model, x, labels)
    n = real.shape[0]
    return [
        Picture("marginals", "Marginals", "Marginals",
                f"Per column: the observed cells of {n} real rows against {gen.shape[0]} rows "
                "drawn from the model (z ~ p(z), x ~ p(x|z)); original units, or each level's "
                "share" + (f" (the first {MAX_COLUMNS} columns)." if len(columns) > MAX_COLUMNS
                           else "."), marginals_figure(columns, real, gen), dpi=90),
        Picture("correlations", "Correlations", "Correlations",
                "Pearson correlations between columns (levels as their codes): real rows "
                "(pairwise over the observed cells) and generated rows.",
                correlations_figure(columns, real, gen), dpi=90),
        Picture("latent-map", "Latent map", "Latent map",
                f"Latent means of {n} real rows" + (", first two principal axes"
                                                     if model.latent_dim > 2 else "")
                + f", coloured by {what} (grey: missing).", latent, dpi=90),
    ]


def write_table_pictures(model: VAE, x: Tensor, labels: Tensor | None, run_dir: str | Path,
                         seed: int = 0) -> dict[str, Path]:
    """Write marginals.png, correlations.png and latent.png of a table run into ``run_dir``."""
    return write_pictures(table_figures(model, x, labels, seed), run_dir)


@torch.no_grad()
def column_errors(model: VAE, x: Tensor, seed: int = 0,
                  labels: Tensor | None = None) -> list[dict[str, Any]]:
    """Per column of ``x`` (N, C) (model units, NaN = missing): how well the observed cells
    are reconstructed from their row's latent mean. Returns one dict per column: ``column``,
    ``type``, ``observed`` (cells), ``measure`` (``"RMSE"`` in original units for numbers
    and counts, ``"error rate"`` for levels), ``error`` (the reconstruction's) and
    ``baseline`` (guessing the observed mean, or the most common level). ``labels`` (N,):
    the rows' labels, for a run conditioned on labels (M2 without them: q(y|x)'s class)."""
    from varfam.evaluation.bounds import latent_locations
    from varfam.tables.imputation import table_columns

    columns = table_columns(model)
    with model.evaluating(seed):
        y = model.labels_of(x.to(model.device), _known_labels(model, labels)) \
            if model.uses_labels else None
        z = latent_locations(model, x, y=y)
        point = model.decode(z.to(model.device), y).mean.double().cpu().numpy()
    real = x.double().cpu().numpy()
    out = []
    for j, col in enumerate(columns):
        seen = ~np.isnan(real[:, j])
        truth, guess = _values(real[seen, j], col), _values(point[seen, j], col)
        row: dict[str, Any] = {"column": col.name, "type": col.type, "observed": int(seen.sum())}
        if not seen.any():
            out.append({**row, "measure": "–", "error": None, "baseline": None})
        elif col.type in DISCRETE_LEVELS:
            common = np.bincount(truth.astype(int)).max() / len(truth)
            out.append({**row, "measure": "error rate",
                        "error": float(np.mean(np.round(guess) != truth)),
                        "baseline": float(1 - common)})
        else:
            out.append({**row, "measure": "RMSE",
                        "error": float(np.sqrt(np.mean((guess - truth) ** 2))),
                        "baseline": float(np.std(truth))})
    return out
