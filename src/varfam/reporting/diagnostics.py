"""The diagnostics of a run's page: every measured number, the latent units, the classifier.

- :func:`metrics_rows`: every number :func:`varfam.evaluation.bounds.evaluate` measured
  for the page, with what training printed, as (label, value) rows;
- :func:`dimension_pictures`: KL per latent dimension and the variance of the latent
  means (the active-unit criterion), as bar charts;
- :func:`confusion_picture`: for a model with a classifier q(y|x), the confusion
  matrix of its predictions on the test examples.

Each picture is a :class:`~varfam.reporting.pictures.Picture`, like the run's image grids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from varfam.reporting.markup import fmt
from varfam.reporting.pictures import Picture

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from varfam.model import VAE

__all__ = ["metrics_rows", "bar_chart", "dimension_pictures", "confusion_picture"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metrics_rows(m: dict[str, Any], epochs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(label, value) of every measure in ``m``, and of what training printed (``epochs``)."""
    k = m.get("iw", 0)
    rows = [
        ("test examples", fmt(m["n"])),
        ("test ELBO (nats): these test examples, fresh draws of z",
         fmt(m["elbo"], se=m.get("elbo_se"))),
        ("reconstruction E_q log p(x|z) (nats)", fmt(m["reconstruction"])),
        ("KL(q(z|x) ‖ p(z)) (nats)", fmt(m["kl"])),
        (f"log p(x), importance sampled, K = {k} (nats)",
         fmt(m.get("log_likelihood"), se=m.get("log_likelihood_se"))),
        (f"ELBO from the same K = {k} samples (nats)", fmt(m.get("elbo_iw_samples"))),
        ("inference gap log p(x) − ELBO (nats)",
         fmt(m.get("inference_gap"), se=m.get("inference_gap_se"))),
    ]
    if m.get("conditional"):  # a model conditioned on labels, measured with the test labels
        rows[1:5] = [
            ("test ELBO of log p(x|y) (nats)", fmt(m["elbo"], se=m.get("elbo_se"))),
            ("reconstruction E_q log p(x|z, y) (nats)", fmt(m["reconstruction"])),
            ("KL(q(z|x, y) ‖ p(z|y)) (nats)", fmt(m["kl"])),
            (f"log p(x|y), importance sampled, K = {k} (nats)",
             fmt(m.get("log_likelihood"), se=m.get("log_likelihood_se"))),
        ]
    if m.get("accuracy") is not None or m.get("marginal_log_likelihood") is not None:
        rows += [("test accuracy of q(y|x)", fmt(m.get("accuracy"), 4)),
                 (f"log p(x), y summed out, K = {k} per class (nats)",
                  fmt(m.get("marginal_log_likelihood"), se=m.get("marginal_log_likelihood_se")))]
    if m.get("elbo_bpd") is not None:
        rows += [("−ELBO (bits/dim)", fmt(m["elbo_bpd"], 4)),
                 ("−log p(x) (bits/dim)", fmt(m.get("log_likelihood_bpd"), 4))]
    rows += [
        ("active units (Cov_x E_q[z_u] > 0.01)", f"{m['active_units']} of {m['latent_dim']}"),
        (f"mutual information I(x; z) under q, {m.get('mi_examples')} examples (nats)",
         fmt(m.get("mutual_information"))),
        (f"probe accuracy (logistic regression, {m.get('probe_train')} train examples)",
         fmt(m.get("probe_accuracy"), 3)),
    ]
    if epochs:
        scored = [r for r in epochs if "test_elbo" in r]
        if scored:  # what training printed: other draws of z, and all of the test set
            rows.append((f"test ELBO at training's last evaluation (epoch {scored[-1]['epoch']}, "
                         "the whole test set, the draws of z made then) (nats)",
                         fmt(scored[-1]["test_elbo"])))
        secs = [r["epoch_seconds"] for r in epochs if "epoch_seconds" in r]
        rows.append(("seconds per epoch (training)", fmt(sum(secs) / len(secs) if secs else None)))
    rows.append(("evaluation time (s)", fmt(m.get("seconds"), 1)))
    return rows


def bar_chart(values: list[float], ylabel: str, threshold: float | None = None) -> Figure:
    """One bar per latent dimension (1..D); ``threshold``: a dashed line (active units)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * len(values) + 2), 2.8), dpi=90)
    ax.bar(range(1, len(values) + 1), values, color="#4c72b0")
    if threshold is not None:
        ax.axhline(threshold, color="#c44e52", lw=1, ls="--", label=f"active: > {threshold:g}")
        ax.legend(fontsize=7)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def dimension_pictures(m: dict[str, Any]) -> list[Picture]:
    """KL per dimension (where q and p factorize) and the variance of the latent means."""
    out = []
    if m.get("kl_per_dim"):
        out.append(Picture("kl-per-dim", "KL per dimension", "KL per dimension",
                           "Mean KL(q(z_u|x) ‖ p(z_u)) of each latent dimension over the test "
                           "examples (nats): where the model spends its information.",
                           bar_chart(m["kl_per_dim"], "KL (nats)")))
    if m.get("latent_variance"):
        out.append(Picture("latent-variance", "Variance of the latent means",
                           "variance of latent means",
                           f"Var_x E_q[z_u] per dimension; a unit is active above 0.01 "
                           f"({m.get('active_units')} of {m.get('latent_dim')} here).",
                           bar_chart(m["latent_variance"], "Var_x E_q[z_u]", 0.01)))
    return out


def confusion_picture(model: VAE, x: torch.Tensor, labels: torch.Tensor) -> Picture:
    """The confusion matrix of q(y|x)'s most probable class on ``x`` (N, ...) against the
    true ``labels`` (N,): rows the true class, columns the predicted one, each row's share."""
    from varfam.evaluation.classify import predict

    assert model.condition is not None, "a confusion matrix needs a classifier q(y|x)"
    names = list(model.condition.names)
    c = len(names)
    known = labels >= 0
    predicted = predict(model, x[known])
    counts = torch.zeros(c, c, dtype=torch.long)
    counts.index_put_((labels[known].long(), predicted), torch.ones_like(predicted),
                      accumulate=True)
    share = counts.double() / counts.sum(1, keepdim=True).clamp_min(1)
    plt = _pyplot()
    side = min(7.0, 2.2 + 0.42 * c)
    fig, ax = plt.subplots(figsize=(side + 0.8, side), dpi=85)
    image = ax.imshow(share.numpy(), vmin=0, vmax=1, cmap="Blues")
    if c <= 20:
        for i in range(c):
            for j in range(c):
                if counts[i, j]:
                    ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(c), [n[:10] for n in names], rotation=90 if c > 6 else 0, fontsize=7)
    ax.set_yticks(range(c), [n[:10] for n in names], fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true class")
    fig.tight_layout()
    right = int(counts.diag().sum())
    total = int(counts.sum())
    return Picture("confusion", "Confusion matrix", "confusion matrix",
                   f"q(y|x)'s most probable class for {total} labelled test examples: "
                   f"{right} right ({100 * right / max(total, 1):.1f} %). Each row is one true "
                   "class; the colour is the share of that class, the number the count.", fig)
