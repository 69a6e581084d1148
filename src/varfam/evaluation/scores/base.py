"""The contract of an anomaly score, the checks every score shares, and :func:`score`.

A score maps a trained model and inputs ``x`` (N, *data_shape) to one number per
input row, a float64 tensor (N,) on the CPU, in nats where it is a log-density
difference. **Higher means more anomalous** (less like the training data). Each
score is a registered method (:data:`varfam.registry.SCORES`): a small dataclass
whose fields are its options, all keyword-only, so the registry can check and list
them, and whose :meth:`Score.compute` does the work.

What every score shares, done once here in :meth:`Score.__call__`:

- the input is checked: it has the model's data shape, and it holds NaN only where
  the likelihood scores observed values alone (``mixed`` tables, ``masked`` images);
  a user's mistake ends in a one-line :class:`~varfam.errors.VarfamError`;
- the model runs in eval mode (restored afterwards) with torch's random state forked
  and seeded by ``seed``, so a score is deterministic for a seed and leaves the
  caller's random state alone;
- rows are scored in an order fixed by their content (a hash of each row's values),
  and the scores put back in the input's order: the score of a row does not depend on
  where it stands, so scoring permuted rows gives the permuted scores exactly. (A row's
  Monte Carlo draws still depend on which *other* rows are scored with it; scoring a
  subset gives new draws, as a new seed would.)

>>> import torch, varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> x = torch.rand(4, 1, 8, 8).round()
>>> s = score(model, x, "nll", k=5)
>>> s.shape, s.dtype
(torch.Size([4]), torch.float64)
>>> bool((score(model, x.flip(0), "nll", k=5) == s.flip(0)).all())
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from varfam.errors import VarfamError
from varfam.registry import SCORES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = [
    "Score",
    "score",
    "as_rows",
    "check_rows",
    "content_order",
    "rows_per_block",
    "scores_observed_only",
    "check_positive",
    "check_contamination",
    "threshold_for",
    "flags",
]


@dataclass(kw_only=True)
class Score:
    """An anomaly score: ``score_method(model, x)`` → (N,) float64, higher = more anomalous.

    Options (fields, keyword-only): ``seed`` seeds every random draw; ``memory_mb``
    bounds the decoder output held at once. Subclasses add their own fields and
    implement :meth:`compute`; ``__post_init__`` validates the options.
    """

    seed: int = 0
    memory_mb: float = 8.0

    #: the registered name (for messages)
    name = "score"
    #: whether the method can score a model conditioned on labels (it then reads ``y``)
    supports_labels = False

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise VarfamError(f"score option seed must be a whole number, got {self.seed!r}")
        if not (isinstance(self.memory_mb, (int, float)) and self.memory_mb > 0):
            raise VarfamError(f"score option memory_mb must be positive, got {self.memory_mb!r}")

    def __call__(self, model: VAE, x: Any, y: Tensor | None = None) -> Tensor:
        """Scores of the rows of ``x`` (N, *data_shape): (N,) float64 on the CPU, input order.

        ``y`` (N,): labels, for a model conditioned on labels (methods that support them).
        """
        x = check_rows(model, as_rows(x), self.name)
        if model.uses_labels and not self.supports_labels:
            raise VarfamError(
                f"score '{self.name}' does not handle a model conditioned on labels; use nll, "
                "elbo, ratio or complexity, or a model trained without labels"
            )
        if y is not None:
            y = torch.as_tensor(y)
            if y.shape[:1] != x.shape[:1]:
                raise VarfamError(f"{y.shape[0]} labels were given for {x.shape[0]} rows")
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float64)
        order = content_order(x)
        with model.evaluating(self.seed):
            s = self.compute(model, x[order], None if y is None else y[order])
        s = s.detach().to("cpu", torch.float64)
        if s.shape != (x.shape[0],):  # pragma: no cover - a programming error in a method
            raise RuntimeError(f"score '{self.name}' returned shape {tuple(s.shape)}")
        out = torch.empty_like(s)
        out[order] = s
        return out

    def compute(self, model: VAE, x: Tensor, y: Tensor | None) -> Tensor:
        """The scores of ``x`` (N, *data_shape) float32 on the CPU, in this order: (N,)."""
        raise NotImplementedError  # pragma: no cover


def score(model: VAE, x: Any, method: str = "nll", *, y: Tensor | None = None,
          **options: Any) -> Tensor:
    """Anomaly scores of the rows of ``x`` under ``model``: (N,) float64, higher = more anomalous.

    ``x``: (N, *data_shape), a tensor or an array, in the units the model was trained on
    (binarize or scale as in training). ``method``: a registered score (``varfam list``
    shows them): ``nll``, ``elbo``, ``recon``, ``ratio``, ``complexity``, ``regret``.
    ``options``: that method's options (``k``, ``seed``, ``background``, ``steps``, …);
    an unknown one ends in a :class:`~varfam.errors.VarfamError` listing the known ones.
    ``y`` (N,): labels, for a model conditioned on labels.
    """
    return SCORES.build(method, options=options)(model, x, y)


# ---------------------------------------------------------------- shared helpers
def as_rows(x: Any) -> Tensor:
    """``x`` (a tensor, a NumPy array, nested lists) as a float32 CPU tensor, rows first."""
    if isinstance(x, Tensor):
        t = x.detach()
    else:
        try:
            a = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise VarfamError(f"cannot read the data to score as an array: {e}") from None
        if a.dtype.kind not in "biuf":
            raise VarfamError(f"the data to score must be numbers, got dtype {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.dim() == 0:
        raise VarfamError("the data to score must have rows, got a single number")
    return t.to("cpu", torch.float32)


def check_rows(model: VAE, x: Tensor, method: str = "score") -> Tensor:
    """Refuse data that does not fit ``model``: wrong shape, NaN it cannot score, bad values.

    ``x``: (N, *data_shape) float32. NaN marks a missing value, allowed only where the
    likelihood scores observed values alone (``mixed``, ``masked``).
    """
    model.check_data(x, "the data to score")
    if not scores_observed_only(model) and x.numel():
        nan_rows = torch.isnan(x.reshape(x.shape[0], -1)).any(1)
        if bool(nan_rows.any()):
            first = int(nan_rows.nonzero()[0])
            raise VarfamError(
                f"{int(nan_rows.sum())} rows hold NaN values (the first is row {first}), which "
                f"the model's likelihood cannot score; drop those rows, or "
                "train with --mask nan if NaN marks missing values"
            )
    if x.numel():
        model.likelihood.check_data(x)
    return x


def scores_observed_only(model: VAE) -> bool:
    """Whether the likelihood of ``model`` scores observed values only (NaN = missing)."""
    from varfam.likelihoods.masked import MaskedLikelihood
    from varfam.likelihoods.mixed import MixedLikelihood

    return isinstance(model.likelihood, (MaskedLikelihood, MixedLikelihood))


def content_order(x: Tensor) -> Tensor:
    """A permutation (N,) int64 that sorts the rows of ``x`` (N, ...) by a hash of their values.

    The same rows give the same order wherever they stand in ``x``; NaN counts as one value.
    """
    flat = torch.nan_to_num(x.reshape(x.shape[0], -1).float(), nan=-7.0, posinf=7e30,
                            neginf=-7e30)
    bits = flat.contiguous().view(torch.int32).to(torch.int64)
    g = torch.Generator().manual_seed(20191)  # fixed odd multipliers: the hash's definition
    weights = torch.randint(1, 2**31 - 1, (bits.shape[1],), generator=g, dtype=torch.int64)
    h = bits * (2 * weights + 1)
    h = (h ^ (h >> 29)) * 0x5851F42D  # mix before summing: integer overflow wraps
    key = h.sum(1)
    return torch.argsort(key, stable=True)


def rows_per_block(model: VAE, draws: int, memory_mb: float) -> int:
    """Rows to decode at once, ``draws`` latents each, so the decoder output fits ``memory_mb``."""
    per_row = 4 * getattr(model.likelihood, "params_per_value", 1) * math.prod(model.data_shape)
    return max(1, int(memory_mb * 2**20) // max(per_row * max(draws, 1), 1))


def check_positive(value: Any, what: str) -> int:
    """``value`` as a positive whole number; a one-line :class:`VarfamError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VarfamError(f"{what} must be a whole number of at least 1, got {value!r}")
    return value


def check_contamination(contamination: Any) -> float:
    """The expected share of anomalies, a number in (0, 0.5]; a one-line error otherwise."""
    ok = (not isinstance(contamination, bool) and isinstance(contamination, (int, float))
          and 0 < contamination <= 0.5)
    if not ok:
        raise VarfamError(
            f"contamination must be a share of anomalies in (0, 0.5], got {contamination!r}"
        )
    return float(contamination)


def threshold_for(scores: Tensor | np.ndarray, contamination: float) -> float:
    """The score above which the top ``contamination`` share of ``scores`` (N,) lies.

    The ``100 (1 - contamination)``-th percentile (linear interpolation), as scikit-learn's
    ``IsolationForest`` sets its ``offset_``; rows scoring above it are flagged.
    """
    c = check_contamination(contamination)
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise VarfamError("there are no scores to set a threshold from")
    return float(np.percentile(values, 100.0 * (1.0 - c)))


def flags(scores: Tensor | np.ndarray, threshold: float) -> np.ndarray:
    """Whether each score (N,) lies above ``threshold``: (N,) bool, True = anomalous."""
    return np.asarray(scores, dtype=np.float64) > threshold
