"""Training curves: one run's, side by side, and several runs' overlaid.

Both read the epoch lines of ``metrics.jsonl`` (:func:`varfam.runs.metrics.read_metrics`):
``train_loss`` every epoch, ``test_elbo`` and ``validation_elbo`` at the epochs that
were evaluated, ``wall_time`` the training seconds so far. Figures are matplotlib's,
drawn with the Agg backend.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["best_epoch", "training_curves", "overlaid_curves"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(epochs: list[dict[str, Any]], key: str, x: str = "epoch") -> tuple[list, list]:
    """(x, y) of the epochs that logged ``key`` (finite values only)."""
    xs, ys = [], []
    for i, r in enumerate(epochs):
        v = r.get(key)
        at = r.get(x, i + 1 if x == "epoch" else None)
        if isinstance(v, (int, float)) and math.isfinite(v) and at is not None:
            xs.append(at)
            ys.append(v)
    return xs, ys


def best_epoch(epochs: list[dict[str, Any]]) -> tuple[int, float, str] | None:
    """(epoch, ELBO, what) of the best evaluation: the best validation ELBO where training
    held out a validation set (the weights it saved), else the best test ELBO."""
    for key, what in (("validation_elbo", "validation"), ("test_elbo", "test")):
        xs, ys = _series(epochs, key)
        if ys:
            k = max(range(len(ys)), key=lambda i: ys[i])
            return int(xs[k]), float(ys[k]), what
    return None


def training_curves(epochs: list[dict[str, Any]]) -> Figure:
    """Three panels side by side: the train loss, the test (and validation) ELBO against
    epoch with the best epoch marked, and the test ELBO against training time (nats)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.3), dpi=80)
    xs, ys = _series(epochs, "train_loss")
    axes[0].plot(xs, ys, marker="o", markersize=3, color="#4c72b0")
    axes[0].set_ylabel("train loss (nats)")
    for key, label, colour in (("test_elbo", "test", "#dd8452"),
                               ("validation_elbo", "validation", "#55a868")):
        xs, ys = _series(epochs, key)
        if ys:
            axes[1].plot(xs, ys, marker="o", markersize=3, label=label, color=colour)
    best = best_epoch(epochs)
    if best is not None:
        epoch, value, what = best
        axes[1].axvline(epoch, color="#888", lw=1, ls="--")
        axes[1].plot([epoch], [value], marker="*", markersize=12, color="#c44e52",
                     label=f"best ({what}): epoch {epoch}", ls="none")
    axes[1].set_ylabel("ELBO (nats)")
    if axes[1].lines:
        axes[1].legend(fontsize=7)
    xs, ys = _series(epochs, "test_elbo", "wall_time")
    axes[2].plot(xs, ys, marker="o", markersize=3, color="#dd8452")
    axes[2].set_ylabel("test ELBO (nats)")
    for ax, xlabel in zip(axes, ("epoch", "epoch", "training time (s)")):
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def overlaid_curves(runs: dict[str, list[dict[str, Any]]]) -> Figure:
    """Several runs' curves on shared axes: test ELBO against epoch and against training
    time, and the train loss against epoch; one colour per run, named in the legend."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.6), dpi=80)
    for name, epochs in runs.items():
        line = axes[0].plot(*_series(epochs, "test_elbo"), marker="o", markersize=3,
                            label=name)[0]
        colour = line.get_color()
        axes[1].plot(*_series(epochs, "test_elbo", "wall_time"), marker="o", markersize=3,
                     color=colour)
        axes[2].plot(*_series(epochs, "train_loss"), color=colour)
        best = best_epoch(epochs)
        if best is not None and best[2] == "validation":
            axes[0].plot([best[0]], [best[1]], marker="*", markersize=10, color=colour)
    for ax, xlabel, ylabel in zip(axes, ("epoch", "training time (s)", "epoch"),
                                  ("test ELBO (nats)", "test ELBO (nats)", "train loss (nats)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
