"""The scikit-learn outlier detector (issue 28): the API, a Pipeline, check_estimator, errors."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    check_estimator,
    check_estimators_pickle,
    check_fit_idempotent,
    check_methods_sample_order_invariance,
    check_n_features_in,
    check_outlier_contamination,
    check_outliers_fit_predict,
    check_outliers_train,
)

from varfam.errors import VarfamError
from varfam.integrations.sklearn import EstimatorInputError, VAEOutlierDetector

#: Checks that do not apply, each with its reason; check_estimator runs every other one.
EXPECTED_FAILED_CHECKS = {
    # The scores are Monte Carlo estimates: a row's draws of z depend on the other rows
    # scored with it, so a row scored alone gets new draws (as with a new seed) and a
    # row near the threshold may change sides. The order of the rows does not matter
    # (check_methods_sample_order_invariance passes: rows are scored in an order fixed
    # by their content), and the same rows always give the same scores.
    "check_methods_subset_invariance": "Monte Carlo scores depend on the batch's draws",
}


def _fast(**params) -> VAEOutlierDetector:
    return VAEOutlierDetector(epochs=2, score_options={"k": 10}, **params)


def _planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """300 correlated inliers in 6 dimensions (a 2-d plane plus noise) and 15 outliers off it."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(2, 6))
    inliers = rng.normal(size=(300, 2)) @ basis + 0.1 * rng.normal(size=(300, 6))
    outliers = rng.normal(size=(15, 6)) * 3
    return np.vstack([inliers, outliers]), np.r_[np.zeros(300), np.ones(15)]


@pytest.mark.parametrize(
    "check",
    [check_outliers_train, check_outliers_fit_predict, check_outlier_contamination,
     check_fit_idempotent, check_estimators_pickle, check_n_features_in,
     check_methods_sample_order_invariance],
)
def test_named_sklearn_checks(check) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(type(_fast()).__name__, _fast())


@pytest.mark.slow
def test_check_estimator() -> None:
    """Every check of scikit-learn's, less the ones named (with reasons) above (about 15 s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(_fast(), expected_failed_checks=EXPECTED_FAILED_CHECKS)


def test_in_a_pipeline_after_standard_scaler_finds_planted_outliers() -> None:
    X, truth = _planted()
    X = X * 100 + 5  # the scaler brings it back
    pipe = make_pipeline(StandardScaler(), VAEOutlierDetector(epochs=30, contamination=0.05))
    labels = pipe.fit(X).predict(X)
    assert set(labels.tolist()) == {-1, 1}
    assert roc_auc_score(truth, -pipe.score_samples(X)) > 0.95
    detector = pipe[-1]
    assert detector.threshold_ == -detector.offset_
    anomaly = detector.anomaly_score(pipe[0].transform(X))
    assert np.array_equal(anomaly > detector.threshold_, labels == -1)
    assert np.allclose(pipe.decision_function(X), pipe.score_samples(X) - detector.offset_)


def test_row_order_and_determinism() -> None:
    X, _ = _planted()
    det = _fast().fit(X)
    s = det.score_samples(X)
    perm = np.random.default_rng(1).permutation(len(X))
    assert np.array_equal(det.score_samples(X[perm]), s[perm])
    assert np.array_equal(clone(det).fit(X).score_samples(X), s)
    again = pickle.loads(pickle.dumps(det))
    assert np.array_equal(again.score_samples(X), s)


def test_missing_cells_are_scored_on_observed_cells() -> None:
    X, _ = _planted()
    X[::7, 2] = np.nan
    det = _fast().fit(X)
    assert np.isfinite(det.score_samples(X)).all()


@pytest.mark.parametrize("method", ["elbo", "recon", "ratio", "regret"])
def test_other_methods(method: str) -> None:
    X, _ = _planted()
    opts = {"regret": {"steps": 5}, "ratio": {"k": 5, "epochs": 1}}.get(method, {"k": 5})
    det = VAEOutlierDetector(method, epochs=2, score_options=opts).fit(X[:120])
    assert det.predict(X[:30]).shape == (30,)


@pytest.mark.parametrize("contamination", [0, 0.6, -0.1, "auto"])
def test_contamination_outside_the_interval(contamination) -> None:
    X, _ = _planted()
    with pytest.raises(VarfamError, match=r"\(0, 0.5\]") as info:
        _fast(contamination=contamination).fit(X)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_bad_input_ends_in_one_line() -> None:
    X, _ = _planted()
    det = _fast().fit(X)
    with pytest.raises(ValueError, match="features"):
        det.predict(X[:, :3])  # shape mismatch: scikit-learn's own message
    with pytest.raises(EstimatorInputError, match="unknown score 'nope'") as info:
        VAEOutlierDetector("nope", epochs=1).fit(X[:20])
    assert "\n" not in str(info.value)
    with pytest.raises(EstimatorInputError, match="2 samples"):
        _fast().fit(X[:1])


# ---------------------------------------------------------------- trimmed refitting
def _clustered(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """300 inliers near a 2-d plane in 6 dimensions and 30 outliers in one tight cluster off
    it: a cluster that a VAE fitted to all rows partly learns as a second mode."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(2, 6))
    inliers = rng.normal(size=(300, 2)) @ basis + 0.1 * rng.normal(size=(300, 6))
    outliers = 3.0 + 0.1 * rng.normal(size=(30, 6))
    return np.vstack([inliers, outliers]), np.r_[np.zeros(300), np.ones(30)]


def test_refits_leave_out_the_rows_the_previous_fit_scored_highest() -> None:
    """One refit leaves out exactly int(trim · n) rows: those with the highest −log p(x)
    under the first fit (which is the detector without refits, with the same seed)."""
    from varfam.evaluation.scores import score

    X, _ = _clustered()
    first = _fast(contamination=0.1).fit(X)
    refit = _fast(contamination=0.1, refits=1, trim=0.05).fit(X)
    assert first.trimmed_.sum() == 0
    assert refit.trimmed_.sum() == int(0.05 * len(X))
    nll = score(first.model_, first._rows(X), "nll", seed=first.seed_).numpy()
    assert np.array_equal(np.flatnonzero(refit.trimmed_),
                          np.sort(np.argsort(-nll, kind="stable")[: int(0.05 * len(X))]))
    assert np.array_equal(clone(refit).fit(X).score_samples(X), refit.score_samples(X))
    # trim defaults to the contamination
    assert _fast(contamination=0.1, refits=1).fit(X).trimmed_.sum() == int(0.1 * len(X))


def test_refits_stop_a_cluster_of_outliers_from_being_learnt() -> None:
    """Fitted to all rows, the VAE learns some of the outliers' cluster (AUROC about 0.96);
    two trimmed refits leave the cluster out of the fit, and every outlier ranks above
    every inlier."""
    X, truth = _clustered()
    plain = VAEOutlierDetector(epochs=60, contamination=0.1).fit(X)
    trimmed = VAEOutlierDetector(epochs=60, contamination=0.1, refits=2).fit(X)
    auc_plain = roc_auc_score(truth, plain.anomaly_score(X))
    auc_trimmed = roc_auc_score(truth, trimmed.anomaly_score(X))
    assert trimmed.trimmed_[truth == 1].mean() > 0.9  # the cluster is left out
    assert auc_trimmed > 0.99 and auc_trimmed > auc_plain


@pytest.mark.parametrize("params, needle", [({"refits": -1}, "refits"),
                                            ({"trim": 0.6}, "trim"), ({"trim": 0.0}, "trim")])
def test_bad_refit_options(params, needle) -> None:
    X, _ = _planted()
    with pytest.raises(ValueError, match=needle) as info:
        _fast(**params).fit(X)
    assert "\n" not in str(info.value).strip()


def test_steps_set_the_epochs_from_the_rows(monkeypatch) -> None:
    """``steps`` trains each fit for ceil(steps / batches per epoch) epochs: 300 rows in
    batches of 64 are 5 batches, so 12 steps take 3 epochs; the refit's 270 rows too."""
    from varfam.integrations import sklearn as module

    fits: list[tuple[int, int]] = []
    real = module._fit_vae

    def spy(x, build, seed, *, epochs, **kw):
        fits.append((x.shape[0], epochs))
        return real(x, build, seed, epochs=epochs, **kw)

    monkeypatch.setattr(module, "_fit_vae", spy)
    X, _ = _planted()
    _fast(steps=12, refits=1).fit(X[:300])
    _fast(steps=12, batch_size=100).fit(X[:150])
    assert fits == [(300, 3), (270, 3), (150, 6)]
