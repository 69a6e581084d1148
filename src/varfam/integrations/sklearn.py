"""scikit-learn estimators over varfam: thin adapters over the Python API, not second copies.

- :class:`VAEOutlierDetector`: outlier detection (as ``IsolationForest``) with a
  registered anomaly score;
- :class:`VAEImputer`: missing values filled by MIWAE (as ``IterativeImputer``): the
  ``iwae`` objective with the ``mixed`` (or ``masked``) likelihood, which leaves NaN cells
  out, and the self-normalized importance-sampled conditional means of
  :func:`varfam.tables.imputation.conditional_predictions` (draws of them for multiple imputation);
- :class:`VAETransformer`: the latent means as features (``transform``), the decoded
  means (``inverse_transform``), the importance-sampled log p(x) (``score_samples``)
  and new rows (``sample``).

All three train with :func:`varfam.train` and take the config's options (``family``,
``prior``, ``likelihood``, ``objective``, ``epochs`` …). The imputer and the transformer
save to a folder with ``est.save(path)`` (a varfam run folder written by
:func:`varfam.save`, which :func:`varfam.load` and the command line read, plus
``estimator.json``) and load with ``VAEImputer.load(path)``. They also pickle, so that
``joblib.dump``, ``GridSearchCV(n_jobs=…)`` and scikit-learn's persistence work: the
model is pickled as the bytes of the files :func:`varfam.save` writes (safetensors and
JSON), never as torch modules, so a pickle holds plain data and loads under another
torch version. (Refusing ``joblib.dump`` would break scikit-learn's parallel tools,
which pickle estimators; a pickle still runs code of the classes it names, so share
models with ``save`` rather than pickles from untrusted hands.)

:class:`VAEOutlierDetector` in detail: ``fit`` trains a varfam VAE on the rows of a table
with :func:`varfam.train`, and the anomaly score of a row is one of the registered scores
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

import json
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    OneToOneFeatureMixin,
    OutlierMixin,
    TransformerMixin,
)
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from varfam.errors import VarfamError

__all__ = ["VAEOutlierDetector", "VAEImputer", "VAETransformer", "EstimatorInputError"]


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


def _fit_vae(x: torch.Tensor, build: dict[str, Any], seed: int, *, epochs: int,
             batch_size: int, lr: float, device: str, **train: Any) -> Any:
    """A VAE built with ``build`` (seeded) and trained on the rows ``x`` (N, D) by
    :func:`varfam.train`; evaluated once, after the last epoch, on the first rows."""
    from varfam.data import Dataset
    from varfam.model import VAE
    from varfam.training import train as train_vae

    n = x.shape[0]
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = VAE.build(**build)
        held = x[: max(1, min(256, n // 10))]
        train_vae(model, Dataset("table", x, held), epochs=epochs,
                  batch_size=int(min(batch_size, n)), lr=lr, seed=seed, device=device,
                  eval_every=epochs, **train)
    except VarfamError as e:
        raise _user_error(e) from None
    return model.eval()


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
    steps : int or None, default=None
        When given, each fit trains for about this many optimizer steps instead of
        ``epochs`` epochs (the epochs follow from the rows it fits and ``batch_size``): on
        small tables the number of steps, not of passes, sets how closely the VAE learns
        the rows, outliers included, and a refit fits fewer rows.
    score_options : dict or None
        Options of the score (``k``, ``steps``, …).
    refits : int, default=0
        Rounds of trimmed refitting. After each fit, the training rows with the highest
        −log p(x) (the ``trim`` share of them) are left out, and a VAE is trained again,
        from the same initial weights' seed, on the rest: the outliers in the rows to fit
        stop pulling the model towards themselves (the idea of least trimmed squares,
        Rousseeuw 1984, applied to the likelihood). Measured in docs/anomaly.md: on wine,
        two refits raise the AUROC from 0.88 to 0.92 (LocalOutlierFactor: 0.93).
    trim : float in (0, 0.5] or None, default=None
        The share of the training rows each refit leaves out; ``None`` means
        ``contamination``.
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
    trimmed_ : ndarray of bool (n_samples,)
        The training rows the last refit left out (all False without refits).
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
        "steps": [Interval(Integral, 1, None, closed="left"), None],
        "score_options": [dict, None],
        "refits": [Interval(Integral, 0, None, closed="left")],
        "trim": [Interval(Real, 0, 0.5, closed="right"), None],
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
        steps: int | None = None,
        score_options: dict[str, Any] | None = None,
        refits: int = 0,
        trim: float | None = None,
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
        self.steps = steps
        self.score_options = score_options
        self.refits = refits
        self.trim = trim
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
        try:
            self._validate_params()
        except InvalidParameterError as e:
            raise EstimatorInputError(str(e)) from None
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        n = X.shape[0]
        if n < 2:
            raise EstimatorInputError(f"the detector needs at least 2 samples to train, got "
                                      f"{n} sample")
        self.mean_, self.scale_ = _standardize(X)
        self.seed_ = _seed(self.random_state)
        rows = self._rows(X)
        self.model_, self.trimmed_ = self._train_trimmed(rows)
        if self.method == "ratio" and "background" not in (self.score_options or {}):
            self.background_ = self._fit_background(rows)
        self.offset_ = float(np.percentile(self.score_samples(X), 100.0 * self.contamination))
        self.threshold_ = -self.offset_
        return self

    def _rows(self, X: np.ndarray) -> torch.Tensor:
        """``X`` standardized with the training rows' mean and scale, as float32 (N, D)."""
        return torch.from_numpy(((X - self.mean_) / self.scale_).astype(np.float32))

    def _train_trimmed(self, x: torch.Tensor) -> tuple[Any, np.ndarray]:
        """The VAE fitted to the rows ``x`` (N, D), and after each of ``refits`` rounds
        refitted to the rows outside the top ``trim`` share of −log p(x); the rows the last
        round left out (N,) bool."""
        from varfam.evaluation.scores import score

        n = x.shape[0]
        trimmed = np.zeros(n, dtype=bool)
        model = self._train(x)
        leave_out = int((self.contamination if self.trim is None else self.trim) * n)
        if leave_out == 0 or n - leave_out < 2:
            return model, trimmed  # too few rows to leave any out
        for _ in range(int(self.refits)):
            nll = score(model, x, "nll", seed=self.seed_).numpy()
            trimmed = np.zeros(n, dtype=bool)
            trimmed[np.argsort(-nll, kind="stable")[:leave_out]] = True
            model = self._train(x[torch.from_numpy(~trimmed)])
        return model, trimmed

    def _train(self, x: torch.Tensor) -> Any:
        d = x.shape[1]
        build = {"data_shape": (d,), "arch": "tabular", "hidden": _hidden(self.hidden),
                 "latent_dim": int(self.latent_dim), "family": self.family,
                 "likelihood": "mixed"}
        batch = int(min(self.batch_size, x.shape[0]))
        epochs = int(self.epochs) if self.steps is None else \
            -(-int(self.steps) // -(-x.shape[0] // batch))  # ceil(steps / batches per epoch)
        return _fit_vae(x, build, self.seed_, epochs=epochs, batch_size=batch, lr=float(self.lr),
                        device=self.device)

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


# ==================================================================== imputer and transformer
#: What :meth:`_VAEEstimator.save` writes beside varfam's run folder files.
ESTIMATOR_FILE = "estimator.json"


def _options(value: dict[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


class _VAEEstimator(BaseEstimator):
    """What the imputer and the transformer share: the model's options (those of the
    config: family, prior, likelihood, objective, epochs …), training on standardized
    columns, saving through :func:`varfam.save`, and pickling without pickling torch.

    ``likelihood="mixed"`` (the default) models each column as a Gaussian in standardized
    units with the ``tabular`` networks, which see the mask (NaN cells are missing and
    left out of the likelihood); ``"masked"`` is the ``masked`` likelihood (option
    ``base``, default ``gaussian``) with the ``mlp`` networks and their ``masked`` input;
    for the transformer any other likelihood (``bernoulli`` for values in [0, 1] …)
    models the values as they are, with the ``mlp`` networks.
    """

    _parameter_constraints: dict = {
        "latent_dim": [Interval(Integral, 1, None, closed="left"), None],
        "hidden": ["array-like", Interval(Integral, 1, None, closed="left")],
        "family": [str], "family_options": [dict, None],
        "prior": [str, None], "prior_options": [dict, None],
        "likelihood": [str], "likelihood_options": [dict, None],
        "objective": [str], "objective_options": [dict, None],
        "epochs": [Interval(Integral, 1, None, closed="left"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "importance_samples": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
    }

    #: Steps of training when ``epochs`` is None: about this many, in 10 to 500 epochs.
    AUTO_STEPS = 2000

    # ---------------------------------------------------------------- fitting
    def _fit_model(self, X: Any) -> torch.Tensor:
        """Validate ``X``, set the standardization and train ``model_``; ``X`` in model units."""
        for name in ("family_options", "prior_options", "likelihood_options",
                     "objective_options"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), dict):
                raise EstimatorInputError(f"{name} must be a dict or None")
        X = validate_data(self, X, dtype=np.float64,
                          ensure_all_finite="allow-nan" if self._allows_nan() else True)
        n, d = X.shape
        if n < 2:
            raise EstimatorInputError(f"the VAE needs at least 2 samples to train, got {n} "
                                      "sample")
        self.seed_ = _seed(self.random_state)
        if self._standardizes():
            self.mean_, self.scale_ = _standardize(X)
        else:
            self.mean_, self.scale_ = np.zeros(d), np.ones(d)
        self.latent_dim_ = int(self.latent_dim or max(1, min(16, d - 1)))
        self.epochs_ = int(self.epochs or np.clip(
            round(self.AUTO_STEPS / -(-n // int(min(self.batch_size, n)))), 10, 500))
        x = self._rows(X)
        self.model_ = _fit_vae(
            x, self._build(d), self.seed_, epochs=self.epochs_,
            batch_size=int(self.batch_size), lr=float(self.lr), device=self.device,
            objective=self.objective, objective_options=self._objective_options())
        return x

    def _objective_options(self) -> dict[str, Any]:
        return _options(self.objective_options)

    def _standardizes(self) -> bool:
        return self.likelihood in ("mixed", "masked")

    def _allows_nan(self) -> bool:
        return self.likelihood in ("mixed", "masked")

    def _build(self, d: int) -> dict[str, Any]:
        """The keywords of :meth:`varfam.VAE.build` for ``d`` columns."""
        build: dict[str, Any] = {
            "data_shape": (d,), "hidden": _hidden(self.hidden), "latent_dim": self.latent_dim_,
            "family": self.family, "family_options": _options(self.family_options),
            "prior": self.prior, "prior_options": _options(self.prior_options)}
        if self.likelihood == "mixed":  # real columns, recorded with their standardization
            columns = [{"name": f"x{j}", "type": "real", "loc": float(self.mean_[j]),
                        "scale": float(self.scale_[j])} for j in range(d)]
            return {**build, "arch": "tabular", "arch_options": {"levels": [0] * d},
                    "likelihood": "mixed",
                    "likelihood_options": {**_options(self.likelihood_options),
                                           "columns": columns}}
        if self.likelihood == "masked":
            return {**build, "arch": "mlp", "arch_options": {"masked": True},
                    "likelihood": "masked",
                    "likelihood_options": {"base": "gaussian",
                                           **_options(self.likelihood_options)}}
        return {**build, "arch": "mlp", "likelihood": self.likelihood,
                "likelihood_options": _options(self.likelihood_options)}

    def _rows(self, X: np.ndarray) -> torch.Tensor:
        """``X`` (N, D) in model units (standardized where the likelihood is Gaussian)."""
        return torch.from_numpy(((X - self.mean_) / self.scale_).astype(np.float32))

    def _original(self, u: torch.Tensor | np.ndarray) -> np.ndarray:
        """Model units (N, D) back to the columns' units, float64."""
        u = u.double().numpy() if isinstance(u, torch.Tensor) else np.asarray(u, np.float64)
        return u * self.scale_ + self.mean_

    def _check(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        return validate_data(self, X, dtype=np.float64, reset=False,
                             ensure_all_finite="allow-nan" if self._allows_nan() else True)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._allows_nan()
        tags.non_deterministic = False  # seeded: the same data and random_state, the same fit
        return tags

    # ---------------------------------------------------------------- saving
    def save(self, path: str | Path) -> Path:
        """Write the fitted estimator to the folder ``path``: the model as a varfam run folder
        (:func:`varfam.save`: ``config.json``, ``model.safetensors``; ``varfam.load(path)``
        and the command line read it) and ``estimator.json`` (the parameters and the
        standardization). :meth:`load` reads it back; nothing is pickled."""
        from varfam.runs import save_model, write_text_atomic

        check_is_fitted(self, "model_")
        path = Path(path)
        save_model(self.model_, path)
        write_text_atomic(path / ESTIMATOR_FILE, json.dumps(self._record(), indent=2))
        return path

    def _record(self) -> dict[str, Any]:
        params = self.get_params()
        if not (params["random_state"] is None or isinstance(params["random_state"], int)):
            params["random_state"] = self.seed_  # a RandomState: the seed it gave
        params["hidden"] = list(_hidden(params["hidden"]))
        fitted = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in vars(self).items()
                  if k.endswith("_") and not k.startswith("_") and k != "model_"}
        return {"class": type(self).__name__, "params": params, "fitted": fitted}

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """The estimator :meth:`save` wrote to ``path``."""
        from varfam.runs import load_model

        path = Path(path)
        try:
            record = json.loads((path / ESTIMATOR_FILE).read_text())
        except FileNotFoundError:
            raise EstimatorInputError(f"{path} holds no {ESTIMATOR_FILE}; give a folder "
                                      f"that {cls.__name__}.save wrote") from None
        if record.get("class") != cls.__name__:
            raise EstimatorInputError(f"{path} holds a {record.get('class')}, not a "
                                      f"{cls.__name__}; load it with that class")
        est = cls(**{**record["params"], "hidden": tuple(record["params"]["hidden"])})
        for key, value in record["fitted"].items():
            setattr(est, key, np.asarray(value) if isinstance(value, list) else value)
        est.model_ = load_model(path)
        return est

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (``joblib.dump``, ``GridSearchCV(n_jobs=…)``) as plain data: the model
        is the bytes of the files :func:`varfam.save` writes, never a pickled module."""
        import tempfile

        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        if model is not None:
            from varfam.runs import save_model

            with tempfile.TemporaryDirectory() as tmp:
                save_model(model, tmp)
                state["_model_files"] = {p.name: p.read_bytes() for p in Path(tmp).iterdir()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import tempfile

        files = state.pop("_model_files", None)
        super().__setstate__(state)
        if files is not None:
            from varfam.runs import load_model

            with tempfile.TemporaryDirectory() as tmp:
                for name, data in files.items():
                    (Path(tmp) / name).write_bytes(data)
                self.model_ = load_model(tmp)


class VAEImputer(OneToOneFeatureMixin, TransformerMixin, _VAEEstimator):
    """Missing values filled by a VAE trained on the incomplete rows (MIWAE), in
    scikit-learn's API: a drop-in for ``IterativeImputer`` or ``KNNImputer``.

    ``fit`` trains a VAE on the rows of ``X`` with NaN cells left out of the likelihood,
    with the importance-weighted bound (``objective="iwae"``, by default ``k=20``:
    MIWAE, Mattei & Frellsen 2019, "MIWAE: Deep Generative Modelling and Imputation of
    Incomplete Data Sets"). ``transform`` fills each NaN cell with its conditional mean
    given the row's observed cells, ``Σ_k w_k E[x_j | z_k]`` over ``importance_samples``
    self-normalized importance draws (:func:`varfam.tables.imputation.conditional_predictions`);
    observed cells are returned as given. With ``sample_posterior=True`` each NaN cell is
    a draw from its conditional distribution instead (sampling-importance-resampling),
    seeded by ``random_state``: for multiple imputation fit or transform with several
    ``random_state`` values, or call :meth:`multiple_imputations`.

    Parameters
    ----------
    latent_dim : int or None, default=None
        Dimensions of z; ``None``: the number of columns less one, at most 16.
    hidden : tuple of int, default=(128, 128)
        Widths of the encoder's (and decoder's) hidden layers.
    family, family_options, prior, prior_options
        The variational family q(z|x) and the prior, by registered name (``varfam list``).
    likelihood : {"mixed", "masked"}, default="mixed"
        See the base class: Gaussian columns with the ``tabular`` networks, or the
        ``masked`` likelihood (option ``base``) with the ``mlp`` networks.
    objective, objective_options : default "iwae", None (= {"k": 20})
        The training objective and its options.
    epochs : int or None, default=None
        ``None``: about 2,000 steps, in 10 to 500 epochs.
    batch_size, lr
        Training of :func:`varfam.train` (Adam).
    importance_samples : int, default=100
        Draws of q(z|x) per row when imputing.
    sample_posterior : bool, default=False
        Fill with a draw of the conditional distribution instead of its mean.
    add_indicator : bool, default=False
        Append ``MissingIndicator``'s columns (as scikit-learn's imputers do).
    random_state : int, RandomState or None, default=0
        Seeds the training and the imputation's draws.
    device : {"cpu", "cuda", "auto"}, default="cpu"

    Attributes
    ----------
    model_ : varfam.VAE
    mean_, scale_ : ndarray (n_features,)
        The standardization of the columns (over their observed cells).
    latent_dim_, epochs_ : int
        The values used.
    n_features_in_, feature_names_in_

    >>> import numpy as np
    >>> X = np.array([[1.0, 2.0], [2.0, np.nan], [3.0, 6.0], [np.nan, 8.0]] * 10)
    >>> filled = VAEImputer(epochs=2).fit_transform(X)
    >>> bool(np.isnan(filled).any()), bool((filled[~np.isnan(X)] == X[~np.isnan(X)]).all())
    (False, True)
    """

    _parameter_constraints: dict = {
        **_VAEEstimator._parameter_constraints,
        "likelihood": [StrOptions({"mixed", "masked"})],
        "sample_posterior": ["boolean"],
        "add_indicator": ["boolean"],
    }

    def __init__(
        self,
        *,
        latent_dim: int | None = None,
        hidden: tuple[int, ...] = (128, 128),
        family: str = "diagonal",
        family_options: dict[str, Any] | None = None,
        prior: str | None = None,
        prior_options: dict[str, Any] | None = None,
        likelihood: str = "mixed",
        likelihood_options: dict[str, Any] | None = None,
        objective: str = "iwae",
        objective_options: dict[str, Any] | None = None,
        epochs: int | None = None,
        batch_size: int = 64,
        lr: float = 1e-3,
        importance_samples: int = 100,
        sample_posterior: bool = False,
        add_indicator: bool = False,
        random_state: Any = 0,
        device: str = "cpu",
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.family = family
        self.family_options = family_options
        self.prior = prior
        self.prior_options = prior_options
        self.likelihood = likelihood
        self.likelihood_options = likelihood_options
        self.objective = objective
        self.objective_options = objective_options
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.importance_samples = importance_samples
        self.sample_posterior = sample_posterior
        self.add_indicator = add_indicator
        self.random_state = random_state
        self.device = device

    def _objective_options(self) -> dict[str, Any]:
        if self.objective_options is None and self.objective == "iwae":
            return {"k": 20}  # MIWAE's K
        return _options(self.objective_options)

    def fit(self, X: Any, y: Any = None) -> VAEImputer:
        """Train on the rows of ``X`` (n_samples, n_features); NaN cells are missing."""
        self._validate_params()
        self._fit_model(X)
        self.indicator_ = None
        if self.add_indicator:
            from sklearn.impute import MissingIndicator

            raw = check_array(X, dtype=np.float64, ensure_all_finite="allow-nan")
            self.indicator_ = MissingIndicator(error_on_new=False).fit(raw)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``X`` with every NaN cell imputed (n_samples, n_features) float64; observed cells
        as given. With ``add_indicator``, followed by ``MissingIndicator``'s columns (one per
        feature that had missing values in ``fit``)."""
        X = self._check(X)
        filled = self._impute(X, draws=1 if self.sample_posterior else 0)[0]
        out = np.where(np.isnan(X), filled, X)
        if getattr(self, "indicator_", None) is not None:
            out = np.hstack([out, self.indicator_.transform(X).astype(np.float64)])
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The input's feature names, then ``missingindicator_NAME`` for each indicator."""
        names = super().get_feature_names_out(input_features)
        if getattr(self, "indicator_", None) is None:
            return names
        indicator = self.indicator_.get_feature_names_out(names)
        return np.concatenate([names, indicator])

    def multiple_imputations(self, X: Any, n_imputations: int = 5) -> list[np.ndarray]:
        """``n_imputations`` completed copies of ``X``, each NaN cell a draw from its
        conditional distribution (seeded by ``random_state``): Rubin's multiple imputation."""
        if isinstance(n_imputations, bool) or not isinstance(n_imputations, Integral) \
                or n_imputations < 1:
            raise EstimatorInputError(f"n_imputations must be at least 1, got {n_imputations}")
        X = self._check(X)
        return [np.where(np.isnan(X), d, X) for d in self._impute(X, draws=int(n_imputations))]

    def _impute(self, X: np.ndarray, draws: int) -> list[np.ndarray]:
        """Conditional means (``draws=0``: one array) or ``draws`` SIR draws, (N, D) each, in
        the columns' units; rows are processed in an order fixed by their content."""
        from varfam.evaluation.scores.base import content_order

        x = self._rows(X)
        if x.shape[0] == 0:
            return [X.copy()]
        order = content_order(x)
        try:
            if isinstance(self.model_.likelihood, _mixed_likelihood()):
                from varfam.tables.imputation import conditional_predictions

                res = conditional_predictions(self.model_, x[order], k=self.importance_samples,
                                              draws=draws, seed=self.seed_)
                if draws and res.draws is not None:  # model units
                    parts = [self._original(res.draws[m]) for m in range(draws)]
                else:  # the columns' units already (they record their standardization)
                    parts = [np.column_stack([res.values[f"x{j}"] for j in range(x.shape[1])])]
            else:
                parts = [self._original(p) for p in _weighted_means(
                    self.model_, x[order], self.importance_samples, draws, self.seed_)]
        except VarfamError as e:
            raise _user_error(e) from None
        out = []
        for p in parts:
            unsorted = np.empty_like(p)
            unsorted[order.numpy()] = p
            out.append(unsorted)
        return out


def _mixed_likelihood() -> type:
    from varfam.likelihoods.mixed import MixedLikelihood

    return MixedLikelihood


@torch.inference_mode()
def _weighted_means(model: Any, x: torch.Tensor, k: int, draws: int,
                    seed: int) -> list[torch.Tensor]:
    """For a likelihood other than ``mixed``: the self-normalized importance-weighted mean
    of the decoded means (``draws=0``) or ``draws`` SIR draws, (N, D) model units each, with
    the weights of :func:`varfam.evaluation.importance.weighed_draws`."""
    from varfam.evaluation.importance import block_sizes, weighed_draws

    n, d = x.shape
    means, sirs = [], []
    with model.evaluating(seed):
        b, _ = block_sizes(model, n, k, 64.0, samples=k)
        for i in range(0, n, b):
            xb = x[i : i + b].to(model.device)
            wd = next(weighed_draws(model, xb, k, rows=xb.shape[0], samples=k, decoded=True))
            w = torch.softmax(wd.log_w, 0)  # (k, B)
            px = wd.decoded
            assert px is not None
            mean = px.mean.double().reshape(k, xb.shape[0], d)
            means.append((w[..., None] * mean).sum(0).cpu())
            if draws:
                picks = torch.multinomial(w.T.float(), draws, replacement=True)  # (B, M)
                rows = torch.arange(xb.shape[0], device=xb.device)
                sirs.append(torch.stack([px.sample().reshape(k, xb.shape[0], d)[picks[:, m], rows]
                                         for m in range(draws)]).cpu())
    if draws:
        return list(torch.cat(sirs, 1))
    return [torch.cat(means)]


class VAETransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _VAEEstimator):
    """A VAE as a scikit-learn transformer: the latent means as features.

    ``fit`` trains a VAE on the rows of ``X``; ``transform`` gives each row's latent mean
    E_q[z|x] (the family's point summary), ``inverse_transform`` the decoded means
    E[x|z] of latents, ``score_samples`` each row's importance-sampled log p(x) (nats,
    in the units of ``X``: with the Gaussian columns of ``mixed`` the log-density of the
    standardized row less Σ_j log scale_j), ``score`` their mean, and ``sample(n)`` rows
    drawn from the model (z from the prior, x from p(x|z)).

    The parameters are :class:`VAEImputer`'s (``objective`` defaults to ``"elbo"``,
    ``latent_dim`` to 2), and ``likelihood`` may be any per-value likelihood (e.g.
    ``"bernoulli"`` for values in [0, 1]), which models the values as given.

    >>> import numpy as np
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> X = np.random.default_rng(0).normal(size=(100, 4))
    >>> pipe = make_pipeline(StandardScaler(), VAETransformer(epochs=2)).fit(X)
    >>> pipe.transform(X).shape, pipe[-1].get_feature_names_out().tolist()
    ((100, 2), ['vaetransformer0', 'vaetransformer1'])
    """

    def __init__(
        self,
        *,
        latent_dim: int | None = 2,
        hidden: tuple[int, ...] = (128, 128),
        family: str = "diagonal",
        family_options: dict[str, Any] | None = None,
        prior: str | None = None,
        prior_options: dict[str, Any] | None = None,
        likelihood: str = "mixed",
        likelihood_options: dict[str, Any] | None = None,
        objective: str = "elbo",
        objective_options: dict[str, Any] | None = None,
        epochs: int | None = None,
        batch_size: int = 64,
        lr: float = 1e-3,
        importance_samples: int = 100,
        random_state: Any = 0,
        device: str = "cpu",
    ) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.family = family
        self.family_options = family_options
        self.prior = prior
        self.prior_options = prior_options
        self.likelihood = likelihood
        self.likelihood_options = likelihood_options
        self.objective = objective
        self.objective_options = objective_options
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.importance_samples = importance_samples
        self.random_state = random_state
        self.device = device

    def fit(self, X: Any, y: Any = None) -> VAETransformer:
        """Train on the rows of ``X`` (n_samples, n_features)."""
        self._validate_params()
        self._fit_model(X)
        self._n_features_out = self.latent_dim_
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The latent means E_q[z|x] of the rows of ``X``: (n_samples, latent_dim_) float64."""
        from varfam.evaluation.bounds import latent_locations

        x = self._rows(self._check(X))
        if x.shape[0] == 0:
            return np.zeros((0, self.latent_dim_))
        return latent_locations(self.model_, x).double().numpy()

    def inverse_transform(self, X: Any) -> np.ndarray:
        """The decoded means E[x|z] of latents ``X`` (n_samples, latent_dim_), in the units of
        the training data: (n_samples, n_features_in_) float64."""
        check_is_fitted(self, "model_")
        z = check_array(X, dtype=np.float64)
        if z.shape[1] != self.latent_dim_:
            raise EstimatorInputError(f"inverse_transform takes latents of {self.latent_dim_} "
                                      f"dimensions, got {z.shape[1]}")
        with torch.inference_mode(), self.model_.evaluating():
            mean = self.model_.decode(torch.from_numpy(z).float().to(self.model_.device)).mean
        return self._original(mean.cpu())

    def score_samples(self, X: Any) -> np.ndarray:
        """Each row's importance-sampled log p(x) (n_samples,), nats in the units of ``X``;
        NaN cells (with ``mixed`` or ``masked``) are left out: log p of the observed cells."""
        from varfam.evaluation.scores import score

        X = self._check(X)
        try:
            nll = score(self.model_, self._rows(X), "nll", k=self.importance_samples,
                        seed=self.seed_).numpy()
        except VarfamError as e:
            raise _user_error(e) from None
        jacobian = (~np.isnan(X) * np.log(self.scale_)).sum(1)
        return -nll - jacobian

    def score(self, X: Any, y: Any = None) -> float:
        """The mean of :meth:`score_samples`: the average log-likelihood (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1) -> np.ndarray:
        """``n_samples`` rows drawn from the model: z ~ p(z), x ~ p(x|z); (n_samples,
        n_features_in_) in the units of the training data, seeded by ``random_state``."""
        check_is_fitted(self, "model_")
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
            raise EstimatorInputError(f"n_samples must be at least 1, got {n_samples}")
        with torch.inference_mode(), self.model_.evaluating(self.seed_):
            z = self.model_.prior_distribution().sample((int(n_samples),))
            x = self.model_.decode(z).sample()
        return self._original(x.reshape(int(n_samples), -1).cpu())
