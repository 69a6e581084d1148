"""Disentanglement on a run's page, for data whose generating factors are known.

:func:`mutual_information_picture` draws the mutual information (nats) between each
latent dimension's mean code and each factor on the page's test examples
(:func:`varfam.evaluation.disentanglement.mutual_information_matrix`: codes in 20 bins,
factors with more than 20 values in 20 bins), one row per latent ordered by KL, as
MIG reads it. :func:`factor_metrics_html` shows the MIG, DCI, SAP and FactorVAE score
that ``varfam eval RUN --factors`` recorded (``"source": "factors"`` in
``metrics.jsonl``), when it did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from varfam.reporting.markup import cell_table, esc, fmt
from varfam.reporting.pictures import Picture

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["latent_order", "mutual_information_picture", "latest_factor_line",
           "factor_metrics_html", "FACTOR_METRICS"]

#: The disentanglement numbers shown (and compared), with their names.
FACTOR_METRICS = (("mig", "MIG"), ("dci_disentanglement", "DCI disentanglement"),
                  ("dci_completeness", "DCI completeness"),
                  ("dci_informativeness", "DCI informativeness"), ("sap", "SAP"),
                  ("factor_vae_score", "FactorVAE score"))


def latent_order(m: dict[str, Any]) -> tuple[list[int], list[float], str]:
    """The latent dimensions by decreasing KL (or variance of the latent means where KL
    per dimension has no closed form): (order, scores, what orders them)."""
    score = m.get("kl_per_dim") or m.get("latent_variance") or []
    what = "KL" if m.get("kl_per_dim") else "variance"
    return sorted(range(len(score)), key=lambda u: -score[u]), list(score), what


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@torch.no_grad()
def mutual_information_picture(model: VAE, x: torch.Tensor, labels: torch.Tensor | None,
                               factors: torch.Tensor, names: tuple[str, ...] | None,
                               m: dict[str, Any]) -> Picture:
    """The (latent × factor) mutual information heat map of ``x`` (N, ...) whose factors
    are ``factors`` (N, F); ``m``: the page's measures (their KL per dimension orders the
    rows)."""
    from varfam.evaluation.bounds import latent_locations
    from varfam.evaluation.disentanglement import mutual_information_matrix

    y = labels if model.uses_labels else None
    with model.evaluating():
        codes = latent_locations(model, x, y=y).double().numpy()
    f = factors.double().numpy()
    names = tuple(names) if names else tuple(f"factor {j + 1}" for j in range(f.shape[1]))
    mi = mutual_information_matrix(codes, f, factor_bins=20)  # (D, F)
    order, score, what = latent_order(m)
    order = order or list(range(codes.shape[1]))
    shown = mi[order]
    plt = _pyplot()
    d, nf = shown.shape
    fig, ax = plt.subplots(figsize=(2.6 + 0.75 * nf, 1.2 + 0.3 * d), dpi=85)
    image = ax.imshow(shown, cmap="viridis", aspect="auto", vmin=0)
    if d * nf <= 200:
        top = float(np.max(shown)) if shown.size else 0.0
        for i in range(d):
            for j in range(nf):
                ax.text(j, i, f"{shown[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if shown[i, j] > 0.6 * top else "white")
    ax.set_xticks(range(nf), [n[:14] for n in names], rotation=30 if nf > 4 else 0, fontsize=8)
    labels_ = [f"z{u + 1}" + (f" ({what} {score[u]:.2f})" if score else "") for u in order]
    ax.set_yticks(range(d), labels_, fontsize=7)
    fig.colorbar(image, ax=ax, label="mutual information (nats)")
    fig.tight_layout()
    return Picture("mutual-information", "Mutual information: latents × factors",
                   "mutual information heat map",
                   f"I(z_u; factor) on the mean codes of {codes.shape[0]} test examples (codes "
                   f"in 20 bins, factors with more than 20 values in 20 bins); one row per "
                   f"latent, ordered by {what}. A disentangled code has one bright cell per "
                   "row and per column.", fig)


def latest_factor_line(evals: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest ``varfam eval --factors`` line of a run, or None."""
    lines = [r for r in evals if r.get("source") == "factors"]
    return lines[-1] if lines else None


def factor_metrics_html(evals: list[dict[str, Any]]) -> str:
    """The disentanglement metrics recorded for the run, as a table ("" if none)."""
    line = latest_factor_line(evals)
    if line is None:
        return ""
    rows = [(name, fmt(line.get(key), 3)) for key, name in FACTOR_METRICS if key in line]
    per_factor = sorted(k for k in line if k.startswith("mig_"))
    rows += [(f"MIG of {k[4:]}", fmt(line[k], 3)) for k in per_factor]
    return (cell_table(rows, header=("metric", "value"), numeric=(False, True))
            + f'<p class="note">From <code>varfam eval RUN --factors</code> on '
            f"{esc(line.get('factor_rows'))} rows of {esc(line.get('data'))} "
            f"({esc(line.get('factor_train'))} training and {esc(line.get('factor_test'))} "
            "test points per metric; disentanglement_lib's protocol).</p>")
