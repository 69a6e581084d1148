"""scikit-learn estimators over varfam: thin adapters over the Python API, not second copies.

:class:`VAEOutlierDetector` is an outlier detector with scikit-learn's API (as
``IsolationForest``): ``fit`` trains a varfam VAE on the rows of a table with
:func:`varfam.train`, and the anomaly score of a row is one of the registered scores
(:func:`varfam.evaluation.scores.score`, ``method``). Following scikit-learn,

- ``score_samples(X)`` is the *negated* anomaly score: higher means more normal;
- ``offset_`` is the ``100 · contamination``-th percentile of ``score_samples`` on the
  training rows, ``decision_function(X) = score_samples(X) - offset_`` is negative for
  outliers, and ``predict(X)`` is ``-1`` for outliers and ``+1`` for inliers;
- ``threshold_ = -offset_`` is the same cut in varfam's units (pyod's convention):
  rows whose anomaly score (higher = more anomalous) exceeds it are outliers.

The table is standardized per column with the training rows' mean and standard
deviation (``mean_``, ``scale_``; a no-op after ``StandardScaler``) and modelled with
the ``tabular`` architecture and the ``mixed`` likelihood with real columns, so NaN
cells are missing values, scored on the observed cells only.

>>> import numpy as np
>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 3))
>>> detector = make_pipeline(StandardScaler(), VAEOutlierDetector(epochs=3, contamination=0.05))
>>> labels = detector.fit(X).predict(X)
>>> sorted(set(labels.tolist())), int((labels == -1).sum())
([-1, 1], 10)
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from varfam.errors import VarfamError

__all__ = ["VAEOutlierDetector", "EstimatorInputError"]


class EstimatorInputError(VarfamError, ValueError):
    """Bad input or parameters given to an estimator: a :class:`VarfamError` (one line, exit
    code 2 on the command line) that scikit-learn's code also catches as a ``ValueError``."""


def _user_error(e: VarfamError) -> EstimatorInputError:
    return EstimatorInputError(str(e))


def _seed(random_state: Any) -> int:
    """A whole-number seed from scikit-learn's ``random_state`` (None, an int or a RandomState)."""
    return int(check_random_state(random_state).randint(2**31 - 1))


def _hidden(hidden: Any) -> tuple[int, ...]:
    widths = (hidden,) if isinstance(hidden, Integral) else tuple(hidden)
    if not widths or any(isinstance(w, bool) or not isinstance(w, Integral) or w < 1
                         for w in widths):
        raise EstimatorInputError(f"hidden must give one or more positive widths, got {hidden!r}")
    return tuple(int(w) for w in widths)


def _standardize(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and scale (D,) of ``X`` (N, D) over its observed cells; scale 1 where
    a column is constant or empty."""
    with np.errstate(all="ignore"):
        observed = ~np.isnan(X)
        count = observed.sum(0)
        mean = np.where(count > 0, np.nansum(X, 0) / np.maximum(count, 1), 0.0)
        var = np.where(count > 0, np.nansum((X - mean) ** 2, 0) / np.maximum(count, 1), 1.0)
    scale = np.sqrt(var)
    scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
    return mean.astype(np.float64), scale.astype(np.float64)


class VAEOutlierDetector(OutlierMixin, BaseEstimator):
    """Outlier detection with a VAE's anomaly score, in scikit-learn's API (see the module doc).

    Parameters
    ----------
    method : str, default="nll"
        The anomaly score (``varfam list`` shows them): ``nll``, ``elbo``, ``recon``,
        ``ratio`` (fits its background model on the training rows) or ``regret``.
    contamination : float in (0, 0.5], default=0.1
        The expected share of outliers in the training rows; sets ``offset_``.
    latent_dim : int, default=2
        Dimensions of z.
    hidden : tuple of int, default=(64,)
        Widths of the encoder's (and decoder's) hidden layers.
    family : str, default="diagonal"
        The variational family q(z|x).
    epochs, batch_size, lr
        Training of :func:`varfam.train`. Few epochs (default 20) on purpose: the rows
        to fit hold the outliers too, and a VAE trained longer learns them as well
        (measured in docs/anomaly.md: breast cancer AUROC 0.96 after 10 epochs, 0.87
        after 300).
    score_options : dict or None
        Options of the score (``k``, ``steps``, …).
    random_state : int, RandomState or None, default=0
        Seeds the training and the score's draws.

    Attributes
    ----------
    model_ : varfam.VAE
        The trained model.
    mean_, scale_ : ndarray (n_features,)
        The standardization of the columns.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    threshold_ : float
        ``-offset_``: anomaly scores above it are outliers.
    n_features_in_ : int
    """

    _parameter_constraints: dict = {
        "method": [str],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "latent_dim": [Interval(Integral, 1, None, closed="left")],
        "hidden": ["array-like", Interval(Integral, 1, None, closed="left")],
        "family": [str],
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "score_options": [dict, None],
        "random_state": ["random_state"],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
    }

    def __init__(
        self,
        method: str = "nll",
        *,
        contamination: float = 0.1,
        latent_dim: int = 2,
        hidden: tuple[int, ...] = (64,),
        family: str = "diagonal",
        epochs: int = 20,
        batch_size: int = 64,
        lr: float = 1e-3,
        score_options: dict[str, Any] | None = None,
        random_state: Any = 0,
        device: str = "cpu",
    ) -> None:
        self.method = method
        self.contamination = contamination
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.family = family
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.score_options = score_options
        self.random_state = random_state
        self.device = device

    # ---------------------------------------------------------------- fitting
    def fit(self, X: Any, y: Any = None) -> VAEOutlierDetector:
        """Train the VAE on the rows of ``X`` (n_samples, n_features); NaN cells are missing."""
        from varfam.evaluation.scores import check_contamination
        from varfam.registry import SCORES

        try:
            check_contamination(self.contamination)
            SCORES.get(self.method)
        except VarfamError as e:
            raise _user_error(e) from None
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        n = X.shape[0]
        if n < 2:
            raise EstimatorInputError(f"the detector needs at least 2 samples to train, got "
                                      f"{n} sample")
        self.mean_, self.scale_ = _standardize(X)
        self.seed_ = _seed(self.random_state)
        rows = self._rows(X)
        self.model_ = self._train(rows)
        if self.method == "ratio" and "background" not in (self.score_options or {}):
            self.background_ = self._fit_background(rows)
        self.offset_ = float(np.percentile(self.score_samples(X), 100.0 * self.contamination))
        self.threshold_ = -self.offset_
        return self

    def _rows(self, X: np.ndarray) -> torch.Tensor:
        """``X`` standardized with the training rows' mean and scale, as float32 (N, D)."""
        return torch.from_numpy(((X - self.mean_) / self.scale_).astype(np.float32))

    def _train(self, x: torch.Tensor) -> Any:
        import varfam
        from varfam.data import Dataset

        n, d = x.shape
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed_)
                model = varfam.VAE.build(
                    data_shape=(d,), arch="tabular", hidden=_hidden(self.hidden),
                    latent_dim=int(self.latent_dim), family=self.family, likelihood="mixed",
                )
            held = x[: max(1, min(256, n // 10))]
            varfam.train(model, Dataset("table", x, held), epochs=int(self.epochs),
                         batch_size=int(min(self.batch_size, n)), lr=float(self.lr),
                         seed=self.seed_, device=self.device, eval_every=int(self.epochs))
        except VarfamError as e:
            raise _user_error(e) from None
        return model.eval()

    def _fit_background(self, x: torch.Tensor) -> Any:
        from varfam.evaluation.scores import fit_background

        opts = {k: v for k, v in (self.score_options or {}).items()
                if k in ("kind", "rate", "epochs", "init")}
        try:
            return fit_background(self.model_, x, seed=self.seed_, **opts)
        except VarfamError as e:
            raise _user_error(e) from None

    # ---------------------------------------------------------------- scoring
    def anomaly_score(self, X: Any) -> np.ndarray:
        """varfam's anomaly score of each row (n_samples,): higher = more anomalous."""
        from varfam.evaluation.scores import score

        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=False)
        options = dict(self.score_options or {})
        options.setdefault("seed", self.seed_)
        if self.method == "ratio" and "background" not in options:
            options["background"] = self._background()
        try:
            return score(self.model_, self._rows(X), self.method, **options).numpy()
        except VarfamError as e:
            raise _user_error(e) from None

    def _background(self) -> Any:
        """The ``ratio`` score's background model, fitted once on the training rows."""
        bg = getattr(self, "background_", None)
        if bg is None:
            raise EstimatorInputError("method 'ratio' needs the training rows: fit first")
        return bg

    def score_samples(self, X: Any) -> np.ndarray:
        """The opposite of the anomaly score (n_samples,): the lower, the more abnormal."""
        return -self.anomaly_score(X)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_`` (n_samples,): negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """-1 for outliers and +1 for inliers, one per row (n_samples,) int."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN cells are missing values
        return tags
