"""Measurements where the answer is known: a linear-Gaussian VAE has an exact log p(x).

p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I) ⇒ p(x) = N(b, WWᵀ + σ²I), and the true
posterior is Gaussian, so every estimator can be checked against closed forms.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor
from torch.distributions import Distribution, MultivariateNormal, Normal

import varfam
from _linear_gaussian import Identity, LinearDecoder
from varfam.cli import main
from varfam.errors import VarfamError
from varfam.evaluation.bounds import (
    active_units,
    evaluate,
    importance_sampled_log_likelihood,
    importance_sampling,
    mutual_information,
)
from varfam.families.gaussian import DiagonalGaussian
from varfam.likelihoods import Likelihood
from varfam.model import VAE
from varfam.priors import StandardNormal

X_DIM, Z_DIM, SIGMA = 6, 3, 0.4


class FixedGaussian(Likelihood):
    """p(x|z) = N(decoder(z), σ²I) with a fixed σ (a test-only likelihood, not registered)."""

    def __init__(self, data_shape: tuple[int, ...], *, sigma: float) -> None:
        super().__init__(data_shape)
        self.sigma = sigma

    def forward(self, params: Tensor) -> Distribution:
        return self._event(Normal(params[:, 0], self.sigma))


def linear_gaussian(scale_factor: float = 1.5, dead: int | None = None, seed: int = 0):
    """(model, W, b): q(z|x) has the true posterior mean and ``scale_factor`` × its marginal sd.

    With ``dead`` set, that latent dimension of q ignores x (a planted inactive unit).
    """
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(X_DIM, Z_DIM, generator=g, dtype=torch.float64)
    b = torch.randn(X_DIM, generator=g, dtype=torch.float64)
    cov = torch.linalg.inv(torch.eye(Z_DIM, dtype=torch.float64) + w.T @ w / SIGMA**2)
    a = cov @ w.T / SIGMA**2  # posterior mean = a (x - b)
    family = DiagonalGaussian(X_DIM, Z_DIM)
    with torch.no_grad():
        weight, bias = a.clone(), -a @ b
        if dead is not None:
            weight[dead] = 0.0
            bias[dead] = 0.3
        family.loc.weight.copy_(weight)
        family.loc.bias.copy_(bias)
        family.log_var.weight.zero_()
        family.log_var.bias.copy_(torch.log(scale_factor**2 * cov.diagonal()))
    model = VAE(Identity(X_DIM), family, LinearDecoder(w.float(), b.float()),
                FixedGaussian((X_DIM,), sigma=SIGMA), StandardNormal(Z_DIM, (X_DIM,)))
    return model.eval(), w, b


def exact_log_px(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    cov = w @ w.T + SIGMA**2 * torch.eye(X_DIM, dtype=torch.float64)
    return MultivariateNormal(b, cov).log_prob(x.double())


def sample_x(w: Tensor, b: Tensor, n: int, seed: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, Z_DIM, generator=g, dtype=torch.float64)
    return (z @ w.T + b + SIGMA * torch.randn(n, X_DIM, generator=g, dtype=torch.float64)).float()


def test_importance_sampling_converges_to_the_exact_log_likelihood() -> None:
    model, w, b = linear_gaussian()
    x = sample_x(w, b, 64)
    exact = exact_log_px(x, w, b)
    err_1 = importance_sampled_log_likelihood(model, x, 1, seed=0) - exact
    res = importance_sampling(model, x, 1000, seed=0)
    err_k = res.log_likelihood - exact
    se_k = float(err_k.std() / math.sqrt(len(err_k)))
    # K = 1 is a single-sample ELBO: biased low by about KL(q || posterior)
    assert float(err_1.mean()) < -0.3
    assert abs(float(err_k.mean())) < max(4 * se_k, 2e-3)
    assert abs(float(err_k.mean())) < abs(float(err_1.mean())) / 30
    # the K-sample ELBO is below the truth, and the IS estimate is between the two
    assert float((res.elbo - exact).mean()) < -0.3
    assert bool((res.log_likelihood >= res.elbo - 1e-9).all())


def test_importance_sampling_bound_tightens_with_k() -> None:
    model, w, b = linear_gaussian()
    x = sample_x(w, b, 64, seed=2)
    exact = exact_log_px(x, w, b)
    errors = [float((importance_sampled_log_likelihood(model, x, k, seed=1) - exact).mean())
              for k in (1, 10, 100)]
    assert errors[0] < errors[1] < errors[2] <= 0.01


def test_chunked_and_unchunked_importance_sampling_agree() -> None:
    model, w, b = linear_gaussian()
    x = sample_x(w, b, 23)
    whole = importance_sampling(model, x, 50, seed=5, memory_mb=1024)
    chunked = importance_sampling(model, x, 50, seed=5, batch_size=4, k_chunk=7)
    tiny_budget = importance_sampling(model, x, 50, seed=5, memory_mb=1e-4)
    for other in (chunked, tiny_budget):
        torch.testing.assert_close(other.log_likelihood, whole.log_likelihood, rtol=0, atol=1e-4)
        torch.testing.assert_close(other.elbo, whole.elbo, rtol=0, atol=1e-4)
    # a different seed gives different draws; the global random state is untouched
    state = torch.get_rng_state()
    other_seed = importance_sampling(model, x, 50, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.allclose(other_seed.log_likelihood, whole.log_likelihood)


def test_evaluate_reports_consistent_metrics() -> None:
    model, w, b = linear_gaussian()
    x = sample_x(w, b, 200)
    m = evaluate(model, x, iw=200)
    assert m["n"] == 200 and m["latent_dim"] == Z_DIM and m["iw"] == 200
    assert abs(m["elbo"] - (m["reconstruction"] - m["kl"])) < 1e-9
    exact = float(exact_log_px(x, w, b).mean())
    assert abs(m["log_likelihood"] - exact) < 4 * m["log_likelihood_se"] + 0.01
    assert m["inference_gap"] > 0
    assert abs(m["inference_gap"] - (m["log_likelihood"] - m["elbo_iw_samples"])) < 1e-9
    # closed-form KL per dimension sums to the (closed-form) total KL
    assert len(m["kl_per_dim"]) == Z_DIM
    assert abs(sum(m["kl_per_dim"]) - m["kl"]) < 1e-4
    # a continuous likelihood has no bits/dim; no labels, no probe
    assert m["elbo_bpd"] is None and m["log_likelihood_bpd"] is None
    assert m["probe_accuracy"] is None
    assert 0 < m["mutual_information"] <= math.log(200)
    json.dumps(m, allow_nan=False)


def test_active_units_counts_a_planted_dead_dimension_as_inactive() -> None:
    model, w, b = linear_gaussian(dead=1)
    x = sample_x(w, b, 300)
    m = evaluate(model, x, iw=0)
    assert m["active_units"] == Z_DIM - 1
    var = m["latent_variance"]
    assert var[1] < 1e-10 and min(var[0], var[2]) > 0.01
    count, var = active_units(torch.tensor([[0.0, 1.0], [0.05, -1.0], [-0.05, 0.0]]))
    assert count == 1 and var.shape == (2,)


def test_mutual_information_is_zero_without_information_and_bounded() -> None:
    model, w, b = linear_gaussian()
    x = sample_x(w, b, 100)
    mi = mutual_information(model, x)
    assert 0.5 < mi <= math.log(100)
    with torch.no_grad():  # q(z|x) no longer depends on x
        model.family.loc.weight.zero_()
    assert abs(mutual_information(model, x)) < 1e-5


def test_probe_accuracy_on_separable_labels() -> None:
    model, w, b = linear_gaussian()
    x_train, x_test = sample_x(w, b, 400, seed=3), sample_x(w, b, 200, seed=4)
    # labels: which side of a hyperplane in x-space; linear in the latent means
    direction = w[:, 0].float()

    def label(x: Tensor) -> Tensor:
        return ((x - b.float()) @ direction > 0).long()

    m = evaluate(model, x_test, iw=0, labels=label(x_test), train=x_train,
                 train_labels=label(x_train))
    assert m["probe_accuracy"] > 0.9 and m["probe_train"] == 400


def test_bits_per_dim_for_a_discrete_likelihood() -> None:
    model = VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=2)
    x = torch.rand(30, 1, 8, 8).round()
    m = evaluate(model, x, iw=5)
    assert m["elbo_bpd"] == pytest.approx(-m["elbo"] / (64 * math.log(2)))
    assert m["log_likelihood_bpd"] == pytest.approx(-m["log_likelihood"] / (64 * math.log(2)))
    assert varfam.evaluate is evaluate


def test_evaluate_refuses_bad_input() -> None:
    model = VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=2)
    with pytest.raises(VarfamError, match="does not fit"):
        evaluate(model, torch.rand(5, 1, 9, 9), iw=2)
    with pytest.raises(VarfamError, match="at least 1"):
        importance_sampling(model, torch.rand(5, 1, 8, 8), 0)


def test_eval_json_cli_end_to_end(digits_run: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["eval", str(digits_run), "--iw", "20", "--limit", "60", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["n"] == 60 and out["iw"] == 20 and out["latent_dim"] == 4
    assert out["elbo"] < 0 and out["kl"] >= 0 and out["inference_gap"] >= 0
    assert out["log_likelihood"] >= out["elbo_iw_samples"]
    assert 0 <= out["active_units"] <= 4 and 0 <= out["probe_accuracy"] <= 1
    assert out["elbo_bpd"] == pytest.approx(-out["elbo"] / (64 * math.log(2)))
    lines = [json.loads(s) for s in (digits_run / "metrics.jsonl").read_text().splitlines()]
    last = lines[-1]
    assert last["kind"] == "eval" and last["source"] == "eval" and last["iw"] == 20
    assert last["log_likelihood"] == out["log_likelihood"]
    # the same seed gives the same numbers; the text output names the measures
    assert main(["eval", str(digits_run), "--iw", "20", "--limit", "60", "--no-record"]) == 0
    text = capsys.readouterr().out
    assert "log p(x)" in text and "active units" in text and f"{out['elbo']:.3f}" in text
    assert len((digits_run / "metrics.jsonl").read_text().splitlines()) == len(lines)
    assert main(["eval", str(digits_run / "nope")]) == 2
