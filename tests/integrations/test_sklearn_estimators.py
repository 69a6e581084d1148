"""VAEImputer and VAETransformer (issue 29): scikit-learn's checks, pipelines, grid search,
multiple imputation, saving (varfam.save, pickle/joblib without pickled torch modules)."""

from __future__ import annotations

import io
import pickle
import pickletools
import warnings

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from varfam.integrations.sklearn import EstimatorInputError, VAEImputer, VAETransformer

#: Checks that do not apply, each with its reason; check_estimator runs every other one.
EXPECTED_FAILED_CHECKS = {
    VAEImputer: {},
    VAETransformer: {
        # score_samples is an importance-sampled estimate: a row's draws of z depend on the
        # other rows scored with it (q is sampled for all rows at once), so a row scored
        # alone gets other draws. The order of the rows does not matter (rows are scored
        # in an order fixed by their content: check_methods_sample_order_invariance
        # passes), the same rows always give the same scores, and transform (the latent
        # means) is exact and passes this check.
        "check_methods_subset_invariance": "Monte Carlo score_samples depend on the batch's "
                                           "draws",
    },
}


def _small(cls, **params):
    return cls(epochs=2, hidden=(16,), importance_samples=10, **params)


@pytest.mark.parametrize("cls", [VAEImputer, VAETransformer])
def test_check_estimator(cls, one_thread) -> None:
    """scikit-learn's whole check suite (about 10 s for both), less the named exceptions."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(_small(cls), expected_failed_checks=EXPECTED_FAILED_CHECKS[cls])


def _low_rank(n: int = 300, seed: int = 0, missing: float = 0.2):
    """Rows near a 2-d plane in 6 dimensions, with cells missing completely at random."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2)) @ rng.normal(size=(2, 6)) + 0.1 * rng.normal(size=(n, 6))
    holes = X.copy()
    holes[rng.random(X.shape) < missing] = np.nan
    return X, holes


def test_imputer_fills_the_holes_better_than_the_mean(one_thread) -> None:
    X, holes = _low_rank()
    imputer = VAEImputer(epochs=40, hidden=(64,), latent_dim=2)
    filled = imputer.fit_transform(holes)
    hidden = np.isnan(holes)
    assert not np.isnan(filled).any()
    assert np.array_equal(filled[~hidden], holes[~hidden])  # observed cells as given
    mse = np.mean((filled - X)[hidden] ** 2)
    mean_mse = np.mean((SimpleImputer().fit_transform(holes) - X)[hidden] ** 2)
    assert mse < 0.5 * mean_mse, (mse, mean_mse)
    # multiple imputation: draws that differ where cells are missing, and only there
    draws = imputer.multiple_imputations(holes, 3)
    assert len(draws) == 3 and not np.allclose(draws[0][hidden], draws[1][hidden])
    assert all(np.array_equal(d[~hidden], holes[~hidden]) for d in draws)
    drawing = clone(imputer).set_params(sample_posterior=True).fit(holes)
    posterior = drawing.transform(holes)  # a draw: seeded, so the same on every call
    assert np.array_equal(posterior, drawing.transform(holes))
    assert not np.allclose(posterior[hidden], filled[hidden])
    masked = VAEImputer(epochs=40, hidden=(64,), latent_dim=2, likelihood="masked")
    mse_masked = np.mean((masked.fit_transform(holes) - X)[hidden] ** 2)
    assert mse_masked < 0.5 * mean_mse, (mse_masked, mean_mse)


def test_imputer_takes_dataframes_and_gives_them_back(one_thread) -> None:
    pd = pytest.importorskip("pandas")
    _, holes = _low_rank(60)
    frame = pd.DataFrame(holes, columns=[f"c{i}" for i in range(6)])
    imputer = _small(VAEImputer).set_output(transform="pandas")
    out = imputer.fit_transform(frame)
    assert list(out.columns) == list(frame.columns) and not out.isna().any().any()
    assert list(imputer.feature_names_in_) == list(frame.columns)
    flagged = _small(VAEImputer, add_indicator=True).fit(holes)  # as scikit-learn's imputers
    assert flagged.transform(holes).shape == (60, 12)
    assert flagged.get_feature_names_out()[-1] == "missingindicator_x5"


def test_imputer_in_a_pipeline_and_a_grid_search(one_thread) -> None:
    X, y = load_wine(return_X_y=True)
    rng = np.random.default_rng(0)
    X = X.copy()
    X[rng.random(X.shape) < 0.1] = np.nan
    pipe = make_pipeline(_small(VAEImputer), StandardScaler(), LogisticRegression(max_iter=500))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.8
    grid = GridSearchCV(pipe, {"vaeimputer__latent_dim": [2, 4]}, cv=2).fit(X, y)
    assert grid.best_params_["vaeimputer__latent_dim"] in (2, 4)
    assert grid.predict(X).shape == y.shape


def test_transformer_in_a_pipeline(one_thread) -> None:
    X, y = load_wine(return_X_y=True)
    pipe = make_pipeline(StandardScaler(), VAETransformer(epochs=40, hidden=(64,),
                                                          latent_dim=3),
                         LogisticRegression(max_iter=500))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.85


def test_transformer_methods(one_thread) -> None:
    X, _ = _low_rank(200, missing=0.0)
    t = VAETransformer(epochs=20, hidden=(32,), latent_dim=2).fit(X)
    z = t.transform(X)
    assert z.shape == (200, 2) and t.get_feature_names_out().tolist() == [
        "vaetransformer0", "vaetransformer1"]
    back = t.inverse_transform(z)
    assert back.shape == X.shape
    assert np.mean((back - X) ** 2) < np.var(X)  # reconstructions carry information
    log_p = t.score_samples(X)
    assert log_p.shape == (200,) and np.isfinite(log_p).all()
    assert t.score(X) == pytest.approx(log_p.mean())
    # the units of X: scaling the columns by 10 shifts log p(x) by -6 log 10 per row
    t10 = clone(t).fit(X * 10)
    assert np.allclose(t10.score_samples(X * 10), log_p - 6 * np.log(10), atol=1e-3)
    samples = t.sample(500)
    assert samples.shape == (500, 6)
    assert np.allclose(samples.std(0), X.std(0), rtol=0.5)
    with pytest.raises(EstimatorInputError, match="latents of 2 dimensions"):
        t.inverse_transform(np.zeros((1, 3)))


def test_transformer_with_a_bernoulli_likelihood(one_thread) -> None:
    from sklearn.datasets import load_digits

    X = load_digits().data[:300] / 16.0
    t = VAETransformer(likelihood="bernoulli", epochs=3, hidden=(32,)).fit(X)
    assert t.transform(X).shape == (300, 2)
    assert (t.sample(4) >= 0).all() and (t.inverse_transform(t.transform(X[:5])) <= 1).all()
    with pytest.raises(ValueError, match="NaN"):
        t.transform(np.where(X[:5] > 0.5, np.nan, X[:5]))


def _torch_globals(data: bytes) -> list[str]:
    """The modules of the classes a pickle names (GLOBAL / STACK_GLOBAL arguments)."""
    names, strings = [], []
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            names.append(strings[-2])
        elif op.name == "GLOBAL":
            names.append(arg.split(" ")[0])
    return [n for n in names if n.startswith("torch")]


@pytest.mark.parametrize("cls", [VAEImputer, VAETransformer])
def test_save_load_pickle_and_joblib(cls, tmp_path, one_thread) -> None:
    """``save`` writes a varfam run folder (varfam.load reads its model) with the
    estimator's record; pickle and joblib hold the model as those files' bytes."""
    import varfam

    _, holes = _low_rank(80)
    est = _small(cls).fit(holes)
    expected = est.transform(holes)
    est.save(tmp_path / "est")
    assert isinstance(varfam.load(tmp_path / "est"), varfam.VAE)
    assert np.allclose(cls.load(tmp_path / "est").transform(holes), expected)
    data = pickle.dumps(est)
    assert _torch_globals(data) == []  # no torch module or tensor is pickled
    assert np.allclose(pickle.loads(data).transform(holes), expected)
    joblib.dump(est, tmp_path / "est.joblib")
    assert np.allclose(joblib.load(tmp_path / "est.joblib").transform(holes), expected)
    other = VAETransformer if cls is VAEImputer else VAEImputer
    with pytest.raises(EstimatorInputError, match=f"holds a {cls.__name__}"):
        other.load(tmp_path / "est")


def test_the_config_options_reach_the_model(one_thread) -> None:
    _, holes = _low_rank(80)
    est = VAEImputer(epochs=2, hidden=(16,), family="iaf", family_options={"flow_steps": 1},
                     prior="vamp", prior_options={"components": 5}, objective="iwae",
                     objective_options={"k": 3, "estimator": "dreg"}).fit(holes)
    cfg = est.model_.config
    assert (cfg.family, cfg.family_options, cfg.prior) == ("iaf", {"flow_steps": 1}, "vamp")
    with pytest.raises(EstimatorInputError, match="unknown family 'iaff'"):
        VAEImputer(epochs=2, family="iaff").fit(holes)
    with pytest.raises(ValueError, match="likelihood"):
        VAEImputer(likelihood="bernoulli").fit(holes)
