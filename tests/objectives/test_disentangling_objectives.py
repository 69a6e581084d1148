"""The disentangling objectives where the answer is known: β-TCVAE's three terms add up to
the KL, DIP's penalties vanish at the prior's covariance, the capacity's schedule; each
trains a step on digits with several families, and bad options end in one line."""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.datasets import load_digits
from torch.distributions import Independent, MultivariateNormal, Normal

from varfam import VAE, VarfamError
from varfam.data import Dataset
from varfam.objectives import BetaTC, Capacity, Dip, FactorVae, kl_term
from varfam.objectives.betatc import log_importance_weights, marginal_log_prob
from varfam.objectives.dip import dip_penalty
from varfam.registry import OBJECTIVES
from varfam.training import train


@pytest.fixture(scope="module")
def digits() -> Dataset:
    x = torch.tensor(load_digits().images[:160], dtype=torch.float32).unsqueeze(1) / 16
    return Dataset("digits", x[:128], x[128:])


def _batch(b: int = 6, d: int = 3) -> tuple[Independent, Independent]:
    g = torch.Generator().manual_seed(0)
    q = Independent(Normal(torch.randn(b, d, generator=g),
                           0.3 + torch.rand(b, d, generator=g)), 1)
    p = Independent(Normal(torch.zeros(d), torch.ones(d)), 1)
    return q, p


# ---------------------------------------------------------------- β-TCVAE
@pytest.mark.parametrize("estimate", ["mss", "mws"])
@pytest.mark.parametrize("kind", ["diagonal", "full-cov, mixture prior"])
def test_mi_tc_and_dimension_kl_add_up_to_the_kl_in_expectation(estimate: str, kind: str) -> None:
    """Per draw the three add up to log q(z|x) - log p(z); over 20,000 draws of the batch
    their mean is each example's closed-form KL (or its 200,000-draw estimate)."""
    q, p = _batch()
    if kind != "diagonal":
        g = torch.Generator().manual_seed(1)
        a = torch.randn(6, 3, 3, generator=g) * 0.3 + torch.eye(3)
        q = MultivariateNormal(q.mean, scale_tril=torch.linalg.cholesky(a @ a.mT))
        p = torch.distributions.MixtureSameFamily(
            torch.distributions.Categorical(logits=torch.zeros(2)),
            Independent(Normal(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]), torch.ones(2, 3)), 1))
    z = q.sample((20_000,))  # (S, B, D): S independent batches
    parts = BetaTC(estimate=estimate, data_size=100).decomposition(q, p, z)
    total = parts.mutual_information + parts.total_correlation + parts.dimension_kl
    torch.testing.assert_close(total, q.log_prob(z) - p.log_prob(z), rtol=1e-5, atol=1e-4)
    if kind == "diagonal":
        kl = kl_term(q, p, z[0])
    else:
        zz = q.sample((200_000,))
        kl = (q.log_prob(zz) - p.log_prob(zz)).mean(0)
    torch.testing.assert_close(total.mean(0), kl, rtol=0.0, atol=0.04)
    # each term is a real part of it: none is zero throughout
    assert all(float(t.abs().mean()) > 1e-3 for t in parts)


def test_stratified_weights_sum_to_one_and_give_no_mi_when_q_ignores_x() -> None:
    w = log_importance_weights(5, 100, "mss").exp()
    torch.testing.assert_close(w.sum(1), torch.ones(5))
    assert w[0, 0] == pytest.approx(1 / 100)
    # every example has the same q(z|x): its MI estimate is exactly 0 (mws's is log N)
    q = Independent(Normal(torch.zeros(5, 2), torch.ones(5, 2)), 1)
    p = Independent(Normal(torch.zeros(2), torch.ones(2)), 1)
    z = q.sample()
    mi = BetaTC(estimate="mss", data_size=100).decomposition(q, p, z).mutual_information
    torch.testing.assert_close(mi, torch.zeros(5), atol=1e-5, rtol=0)
    mi = BetaTC(estimate="mws", data_size=100).decomposition(q, p, z).mutual_information
    torch.testing.assert_close(mi, torch.full((5,), math.log(100)), atol=1e-4, rtol=0)


def test_marginals_of_a_gaussian_and_of_a_mixture() -> None:
    q = MultivariateNormal(torch.zeros(2), torch.tensor([[4.0, 1.0], [1.0, 1.0]]))
    z = torch.tensor([1.0, -1.0])
    torch.testing.assert_close(marginal_log_prob(q, z),
                               Normal(0.0, torch.tensor([2.0, 1.0])).log_prob(z))
    mix = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=torch.tensor([0.0, 1.0])),
        Independent(Normal(torch.tensor([[0.0, 1.0], [2.0, 3.0]]), torch.ones(2, 2)), 1))
    w = torch.softmax(torch.tensor([0.0, 1.0]), 0)
    want = torch.log(w[0] * Normal(torch.tensor([0.0, 1.0]), 1.0).log_prob(z).exp()
                     + w[1] * Normal(torch.tensor([2.0, 3.0]), 1.0).log_prob(z).exp())
    torch.testing.assert_close(marginal_log_prob(mix, z), want)


# ---------------------------------------------------------------- DIP-VAE
def test_dip_penalties_vanish_when_the_aggregate_covariance_is_the_identity() -> None:
    b, d = 8, 3
    # means whose batch covariance (1/B) is exactly s2 · I: scaled orthonormal columns
    basis, _ = torch.linalg.qr(torch.randn(b, d))
    basis = basis - basis.mean(0)
    basis, _ = torch.linalg.qr(basis)  # orthonormal and centred (centring kept the span)
    eye = torch.eye(d)

    def q(s2_means: float, var: float) -> Independent:
        mu = basis * math.sqrt(b * s2_means)
        return Independent(Normal(mu, torch.full((b, d), math.sqrt(var))), 1)

    # DIP-I reads the means alone; DIP-II adds the mean covariance of q(z|x)
    i, ii = Dip(kind="i"), Dip(kind="ii")
    torch.testing.assert_close(i.covariance(q(1.0, 0.3)), eye, atol=1e-5, rtol=0)
    assert float(dip_penalty(i.covariance(q(1.0, 0.3)), eye, 10, 100)) < 1e-8
    assert float(dip_penalty(ii.covariance(q(0.7, 0.3)), eye, 10, 10)) < 1e-8
    assert float(dip_penalty(ii.covariance(q(1.0, 0.3)), eye, 10, 10)) == pytest.approx(
        10 * d * 0.09, rel=1e-4)  # the diagonal is 1.3 instead of 1
    off = eye + 0.1 * (torch.ones(d, d) - eye)
    assert float(dip_penalty(off, eye, 10.0, 0.0)) == pytest.approx(10 * d * (d - 1) * 0.01)


def test_dip_defaults_follow_disentanglement_lib() -> None:
    assert (Dip().lambda_od, Dip().lambda_d) == (10.0, 100.0)
    assert Dip(kind="ii", lambda_od=5).lambda_d == 5.0


# ---------------------------------------------------------------- capacity
def test_capacity_schedule() -> None:
    c = Capacity(capacity=25.0, capacity_epochs=10.0, gamma=1000.0)
    assert [c.target(e) for e in (0.0, 1.0, 5.0, 10.0, 12.5)] == [0.0, 2.5, 12.5, 25.0, 25.0]
    got = c.target(torch.tensor(4.0, dtype=torch.float64))  # a compiled step's epoch
    assert isinstance(got, torch.Tensor) and float(got) == pytest.approx(10.0)
    assert Capacity(capacity=0.0, capacity_epochs=0.0).target(3.0) == 0.0


# ---------------------------------------------------------------- training
@pytest.mark.parametrize(("objective", "options", "families"), [
    ("betatc", {"beta": 6.0}, ("diagonal", "full", "laplace", "mixture")),
    ("betatc", {"estimate": "mws", "mi_weight": 0.5}, ("lowrank",)),
    ("dip", {"kind": "i"}, ("diagonal", "full", "student")),
    ("dip", {"kind": "ii"}, ("diagonal", "lowrank")),
    ("capacity", {"capacity": 5.0, "capacity_epochs": 2.0}, ("diagonal", "iaf", "vmf")),
    ("factorvae", {"gamma": 10.0, "discriminator_width": 16, "discriminator_depth": 2},
     ("diagonal", "full", "iaf")),
])
def test_each_objective_trains_on_digits_with_several_families(
    digits: Dataset, objective: str, options: dict, families: tuple[str, ...]
) -> None:
    for family in families:
        torch.manual_seed(0)
        model = VAE.build(data_shape=(1, 8, 8), hidden=(32,), latent_dim=4, family=family)
        before = [p.detach().clone() for p in model.parameters()]
        result = train(model, digits, epochs=1, batch_size=32, objective=objective,
                       objective_options=options, precision="fp32")
        record = result.history[-1]
        assert math.isfinite(record["train_loss"]) and math.isfinite(record["test_elbo"])
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), family


def test_betatc_learns_the_data_size_from_the_loop(digits: Dataset) -> None:
    seen = {}

    class Spy(BetaTC):
        def decomposition(self, q, p, z):  # noqa: ANN001, ANN202
            seen["n"] = self.data_size
            return super().decomposition(q, p, z)

    spy = Spy()
    spy.prepare(VAE.build(data_shape=(1, 8, 8), hidden=(8,), latent_dim=2), data_size=128,
                batch_size=32)
    q, p = _batch()
    spy.decomposition(q, p, q.sample())
    assert seen["n"] == 128
    with pytest.raises(VarfamError, match="number of training examples N"):
        BetaTC().decomposition(q, p, q.sample())


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize(("name", "options", "message"), [
    ("betatc", {"estimate": "exact"}, "estimate must be mss or mws"),
    ("betatc", {"beta": -1}, "beta must be a non-negative number"),
    ("betatc", {"data_size": 0}, "data_size must be a positive integer"),
    ("betatc", {"lambda_od": 1}, "takes no option 'lambda_od'"),
    ("dip", {"kind": "iii"}, "kind must be i or ii"),
    ("dip", {"lambda_d": -2.0}, "lambda_d must be a non-negative"),
    ("capacity", {"capacity_epochs": 0}, "capacity_epochs must be positive"),
    ("capacity", {"beta": 4}, "takes no option 'beta'"),
    ("factorvae", {"discriminator_width": 0}, "discriminator_width must be a positive"),
    ("factorvae", {"discriminator_lr": 0}, "discriminator_lr must be a positive"),
])
def test_bad_options_are_refused_in_one_line(name: str, options: dict, message: str) -> None:
    with pytest.raises(VarfamError, match=message) as err:
        OBJECTIVES.build(name, options=options)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("objective", "family", "prior", "message"), [
    ("betatc", "iaf", None, "one-dimensional marginals of q"),
    ("betatc", "vmf", None, "one-dimensional marginals of q"),
    ("dip", "iaf", None, "needs the mean of q"),
    ("dip", "diagonal", "mog", "Gaussian prior"),
    ("factorvae", "vmf", None, "leaves the sphere"),
])
def test_combinations_the_maths_does_not_allow_are_refused_before_training(
    digits: Dataset, tmp_path, objective: str, family: str, prior: str | None, message: str
) -> None:
    model = VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=4, family=family,
                      prior=prior)
    out = tmp_path / "run"
    with pytest.raises(VarfamError, match=message) as err:
        train(model, digits, epochs=1, batch_size=32, objective=objective, out=out)
    assert "\n" not in str(err.value)
    assert not out.exists()  # nothing written


def test_dip_ii_refuses_a_family_without_a_covariance(digits: Dataset) -> None:
    model = VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=4, family="mixture")
    with pytest.raises(VarfamError, match="kind=ii needs the covariance"):
        train(model, digits, epochs=1, objective="dip", objective_options={"kind": "ii"})


def test_factorvae_refuses_a_batch_of_one(digits: Dataset, tmp_path) -> None:
    model = VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=4)
    with pytest.raises(VarfamError, match="at least 2 examples per batch") as err:
        train(model, digits, epochs=1, batch_size=1, objective="factorvae", out=tmp_path / "r")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "r").exists()
    assert FactorVae().auxiliary_modules() is None
