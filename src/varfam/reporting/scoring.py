"""Anomaly scores on a run's page: the test set's histogram, and the ROC against other data.

:func:`page_scores` scores the page's test examples with a registered method
(:mod:`varfam.evaluation.scores`; by default ``nll`` with a small K, cheap beside the
page's own K = 100 evaluation) and, given a second data set (``varfam report RUN
--ood-data OTHER``), its test examples too. :func:`score_pictures` draws the
histogram of each and, with a second data set, the ROC curve of telling them apart
(the other data as the positives: a higher score is more anomalous) with its AUROC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from varfam.reporting.pictures import Picture

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["PageScores", "page_scores", "auroc", "score_pictures"]


@dataclass
class PageScores:
    """Scores (N,) of the test examples (``test``) and of another data set's (``other``,
    named ``other_name``), by ``method`` with ``options``."""

    method: str
    options: dict[str, Any]
    test: torch.Tensor
    other: torch.Tensor | None = None
    other_name: str | None = None

    @property
    def auroc(self) -> float | None:
        """The area under the ROC curve of telling ``other`` from ``test`` (None without it)."""
        return None if self.other is None else auroc(self.test, self.other)

    def record(self) -> dict[str, Any]:
        """What the page's eval line records about the scores."""
        out: dict[str, Any] = {"score_method": self.method, **{f"score_{k}": v for k, v in
                                                               self.options.items()},
                               "score_mean": float(self.test.mean())}
        if self.other is not None:
            out.update(ood_data=self.other_name, ood_auroc=self.auroc,
                       ood_score_mean=float(self.other.mean()))
        return out


def _options(method: str, k: int, seed: int) -> dict[str, Any]:
    from varfam.registry import SCORES, accepted_options

    accepted = accepted_options(SCORES.get(method))
    return {**({"k": k} if "k" in accepted else {}), "seed": seed}


def page_scores(model: VAE, x: torch.Tensor, labels: torch.Tensor | None, *,
                method: str = "nll", k: int = 16, seed: int = 0,
                other: tuple[str, torch.Tensor, torch.Tensor | None] | None = None) -> PageScores:
    """Score ``x`` (N, *data_shape) (and ``other = (name, x2, labels2)``) with ``method``;
    ``k`` importance samples where the method takes them. A model conditioned on labels
    reads the labels given."""
    from varfam.evaluation.scores import score

    options = _options(method, k, seed)
    y = labels if model.uses_labels else None
    out = PageScores(method, {k_: v for k_, v in options.items() if k_ != "seed"},
                     score(model, x, method, y=y, **options))
    if other is not None:
        name, x2, labels2 = other
        out.other_name = name
        out.other = score(model, x2, method, y=labels2 if model.uses_labels else None,
                          **options)
    return out


def auroc(inliers: torch.Tensor, outliers: torch.Tensor) -> float:
    """The probability that an outlier scores above an inlier (ties count half)."""
    from sklearn.metrics import roc_auc_score

    truth = np.r_[np.zeros(len(inliers)), np.ones(len(outliers))]
    return float(roc_auc_score(truth, np.r_[inliers.numpy(), outliers.numpy()]))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def score_pictures(s: PageScores, data_name: str) -> list[Picture]:
    """The histogram of the scores (both sets, on shared bins, with another data set) and,
    with another data set, the ROC curve with its AUROC."""
    plt = _pyplot()
    test = s.test.numpy()
    both = test if s.other is None else np.r_[test, s.other.numpy()]
    finite = both[np.isfinite(both)]
    lo, hi = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
    fig, ax = plt.subplots(figsize=(6.2, 3.4), dpi=85)
    ax.hist(np.clip(test, lo, hi), bins, alpha=0.6, density=True,
            label=f"{data_name} test ({len(test)})")
    if s.other is not None:
        other = s.other.numpy()
        ax.hist(np.clip(other, lo, hi), bins, alpha=0.6, density=True,
                label=f"{s.other_name} ({len(other)})")
    options = ", ".join(f"{k} = {v}" for k, v in s.options.items())
    ax.set_xlabel(f"score: {s.method}" + (f" ({options})" if options else "")
                  + ", higher = more anomalous")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    what = f"the {len(test)} test examples of {data_name}"
    if s.other is not None:
        what += f" and {len(s.other)} test examples of {s.other_name}"
    out = [Picture("score-histogram", "Anomaly scores", "score histogram",
                   f"Histogram of the {s.method} score of {what} (values beyond the 0.5 and "
                   "99.5 percentiles are gathered at the ends).", fig)]
    if s.other is not None:
        from sklearn.metrics import roc_curve

        truth = np.r_[np.zeros(len(test)), np.ones(len(s.other))]
        fpr, tpr, _ = roc_curve(truth, np.r_[test, s.other.numpy()])
        fig, ax = plt.subplots(figsize=(3.8, 3.4), dpi=85)
        ax.plot(fpr, tpr, color="#c44e52", label=f"AUROC {s.auroc:.3f}")
        ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
        ax.set_xlabel(f"false positive rate ({data_name})")
        ax.set_ylabel(f"true positive rate ({s.other_name})")
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        out.append(Picture("roc", "ROC curve", "ROC curve",
                           f"Telling {s.other_name} (positives) from {data_name} (negatives) by "
                           f"the {s.method} score: AUROC {s.auroc:.3f} (0.5 is chance; below 0.5 "
                           "the model finds the other data more likely than its own).", fig))
    return out
