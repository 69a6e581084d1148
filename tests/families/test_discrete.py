"""Relaxed discrete families (gumbel, bernoulli) and the categorical prior, in float64."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

import varfam
from _quadrature import grid, logit_axis, weights
from varfam.errors import VarfamError
from varfam.families.discrete import RelaxedOneHotGroups, annealed_temperature
from varfam.objectives import kl_term
from varfam.registry import FAMILIES, PRIORS

f64 = torch.float64


def integrate_simplex_k2(q, half_width: float = 70.0, n: int = 20001) -> torch.Tensor:
    """∫ q over z = (y, 1 - y), y in (0, 1), with y = sigmoid(s): dy = y (1 - y) ds."""
    s, log_jac = logit_axis(n, half_width)
    two = lambda u: torch.cat([torch.sigmoid(u), torch.sigmoid(-u)], -1).unsqueeze(1)  # noqa: E731
    return weights(lambda u: q.log_prob(two(u)), *grid([s], [log_jac])).sum(0)


def integrate_simplex_k3(q, half_width: float = 60.0, n: int = 1201) -> torch.Tensor:
    """∫ q over the 2-simplex in additive-logistic coordinates z = softmax(s1, s2, 0).

    The map (s1, s2) -> (z1, z2) has Jacobian determinant z1 z2 z3.
    """
    s, _ = logit_axis(n, half_width)

    def log_density(u: torch.Tensor) -> torch.Tensor:
        z = torch.softmax(torch.cat([u, torch.zeros_like(u[:, :1])], -1), -1)
        return q.log_prob(z.unsqueeze(1)) + z.log().sum(-1, keepdim=True)

    return weights(log_density, *grid([s, s])).sum(0)


def integrate_unit_square(q, half_width: float = 40.0, n: int = 1601) -> torch.Tensor:
    s, log_jac = logit_axis(n, half_width)
    return weights(lambda u: q.log_prob(torch.sigmoid(u).unsqueeze(1)),
                   *grid([s, s], [log_jac, log_jac])).sum(0)


# ------------------------------------------------------------------ densities integrate to one


@pytest.mark.parametrize("tau", [0.3, 0.5, 1.0, 2.0])
def test_gumbel_density_integrates_to_one_k2(tau: float) -> None:
    fam = FAMILIES.build("gumbel", 4, 2, options={"categories": 2, "temperature": tau}).double()
    q = fam(torch.randn(3, 4, dtype=f64))
    assert torch.allclose(integrate_simplex_k2(q), torch.ones(3, dtype=f64), atol=1e-6)


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_gumbel_density_integrates_to_one_k3(tau: float) -> None:
    q = RelaxedOneHotGroups(torch.tensor(tau, dtype=f64), torch.randn(2, 1, 3, dtype=f64))
    assert torch.allclose(integrate_simplex_k3(q), torch.ones(2, dtype=f64), atol=1e-5)


@pytest.mark.parametrize("tau", [0.5, 1.0])
def test_bernoulli_density_integrates_to_one(tau: float) -> None:
    fam = FAMILIES.build("bernoulli", 4, 2, options={"temperature": tau}).double()
    q = fam(torch.randn(2, 4, dtype=f64))
    assert torch.allclose(integrate_unit_square(q), torch.ones(2, dtype=f64), atol=1e-5)


def test_categorical_priors_integrate_to_one() -> None:
    p = PRIORS.build("categorical", 3, (1, 8, 8), options={"categories": 3}).double()()
    assert p.batch_shape == () and p.event_shape == (3,)
    assert float(integrate_simplex_k3(p)) == pytest.approx(1.0, abs=1e-5)
    binary = PRIORS.build("categorical", 2, (1, 8, 8), options={"binary": True}).double()()
    assert binary.batch_shape == () and binary.event_shape == (2,)
    assert float(integrate_unit_square(binary)) == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------ samplers


def test_gumbel_samples_are_grouped_simplex_points_with_gumbel_max_frequencies() -> None:
    """argmax of a relaxed sample is distributed as Categorical(softmax(logits)) at any tau."""
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5], [2.0, -2.0, 0.0, 0.0]], dtype=f64)
    q = RelaxedOneHotGroups(torch.tensor(0.5, dtype=f64), logits)  # one example, 2 groups of 4
    z = q.sample((40000,)).view(40000, 2, 4)
    assert torch.allclose(z.sum(-1), torch.ones(40000, 2, dtype=f64)) and (z > 0).all()
    freq = torch.nn.functional.one_hot(z.argmax(-1), 4).double().mean(0)
    assert (freq - torch.softmax(logits, -1)).abs().max() < 0.01
    assert torch.allclose(q.probs, torch.softmax(logits, -1).flatten())


def test_relaxed_bernoulli_threshold_frequency_is_sigmoid() -> None:
    fam = FAMILIES.build("bernoulli", 4, 3).double()
    h = torch.randn(2, 4, dtype=f64)
    z = fam(h).sample((40000,))
    assert ((z > 0) & (z < 1)).all()
    assert ((z > 0.5).double().mean(0) - fam.location(h)).abs().max() < 0.01


def test_low_temperature_float32_log_prob_stays_finite() -> None:
    q = RelaxedOneHotGroups(torch.tensor(0.05), 10 * torch.randn(64, 2, 10))
    z = q.rsample((8,))
    assert torch.isfinite(q.log_prob(z)).all()


# ------------------------------------------------------------------ temperature annealing


def test_annealing_schedule() -> None:
    assert annealed_temperature(1.0, 0.0, 0.5, 100.0) == 1.0
    assert annealed_temperature(1.0, 0.1, 0.2, 0.0) == 1.0
    assert annealed_temperature(1.0, 0.1, 0.2, 3.0) == pytest.approx(math.exp(-0.3))
    assert annealed_temperature(1.0, 0.1, 0.2, 50.0) == 0.2  # the floor


@pytest.mark.parametrize("name", ["gumbel", "bernoulli"])
def test_set_epoch_anneals_family_and_prior(name: str) -> None:
    options = {"temperature": 1.0, "anneal_rate": 0.5, "min_temperature": 0.3}
    fam = FAMILIES.build(name, 4, 10, options=options)
    prior = PRIORS.build("categorical", 10, (1, 8, 8), options=fam.default_prior_options)
    h = torch.randn(2, 4)
    for epoch, tau in [(0.0, 1.0), (1.5, math.exp(-0.75)), (10.0, 0.3)]:
        fam.set_epoch(epoch)
        prior.set_epoch(epoch)
        q = fam(h)
        base = q.base_dist if name == "bernoulli" else q.base_dist.base_dist
        assert float(base.temperature) == pytest.approx(tau, rel=1e-6)
        assert float(prior.temperature) == pytest.approx(tau, rel=1e-6)
        assert torch.isfinite(prior().log_prob(q.rsample())).all()


def test_annealed_temperature_is_saved_with_the_weights(tmp_path) -> None:
    fam = FAMILIES.build("gumbel", 4, 10, options={"temperature": 1.0, "anneal_rate": 1.0})
    fam.set_epoch(1.0)
    save_file(dict(fam.state_dict()), tmp_path / "w.safetensors")
    fresh = FAMILIES.build("gumbel", 4, 10, options={"temperature": 1.0, "anneal_rate": 1.0})
    fresh.load_state_dict(load_file(tmp_path / "w.safetensors"))
    assert float(fresh.temperature) == pytest.approx(math.exp(-1.0))


# ------------------------------------------------------------------ families, errors, model


@pytest.mark.parametrize(("name", "dim"), [("gumbel", 20), ("bernoulli", 5)])
def test_family_shapes_and_monte_carlo_kl(name: str, dim: int) -> None:
    fam = FAMILIES.build(name, 16, dim)
    assert fam.default_prior == "categorical"
    h = torch.randn(7, 16)
    q = fam(h)
    assert q.batch_shape == (7,) and q.event_shape == (dim,)
    z = q.rsample((3,))
    assert z.shape == (3, 7, dim) and q.log_prob(z).shape == (3, 7)
    assert fam.location(h).shape == (7, dim)
    p = PRIORS.build("categorical", dim, (1, 8, 8), options=fam.default_prior_options)()
    kl = kl_term(q, p, z[0])  # no closed form: log q(z) - log p(z) on the same z
    assert torch.allclose(kl, q.log_prob(z[0]) - p.log_prob(z[0]))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FAMILIES.build("gumbel", 4, 7), "latent_dim 7 is not a multiple of categories 10"),
        (lambda: FAMILIES.build("gumbel", 4, 6, options={"categories": 4}), "categories=K"),
        (lambda: FAMILIES.build("gumbel", 4, 6, options={"categories": 1}), "integer >= 2"),
        (lambda: FAMILIES.build("gumbel", 4, 6, options={"categories": 1.5}), "integer >= 2"),
        (lambda: FAMILIES.build("gumbel", 4, 6, options={"categories": "3"}), "integer >= 2"),
        (lambda: FAMILIES.build("bernoulli", 4, 6, options={"temperature": 0}), "positive"),
        (
            lambda: FAMILIES.build(
                "bernoulli", 4, 6, options={"anneal_rate": 0.1, "min_temperature": 0.9}
            ),
            "min_temperature",
        ),
        (lambda: FAMILIES.build("gumbel", 4, 10, options={"anneal_rate": -1}), "anneal_rate"),
        (
            lambda: PRIORS.build("categorical", 6, (1, 8, 8), options={"categories": 4}),
            "not a multiple of categories 4",
        ),
        (
            lambda: PRIORS.build(
                "categorical", 6, (1, 8, 8), options={"binary": True, "categories": 2}
            ),
            "drop --prior-option categories",
        ),
    ],
)
def test_user_errors(build, message: str) -> None:
    with pytest.raises(VarfamError, match=message):
        build()


def test_prior_that_does_not_match_the_family_is_a_user_error() -> None:
    fam = FAMILIES.build("gumbel", 4, 10, options={"categories": 5})
    prior = PRIORS.build("categorical", 10, (1, 8, 8))()  # K = 10, not 5
    with pytest.raises(VarfamError, match="--prior-option categories=K"):
        prior.log_prob(fam(torch.randn(2, 4)).rsample())
    fam = FAMILIES.build("bernoulli", 4, 10)
    with pytest.raises(VarfamError, match="binary=true"):
        prior.log_prob(fam(torch.randn(2, 4)).rsample())


def test_vae_build_gives_the_default_prior_the_family_options() -> None:
    model = varfam.VAE.build(
        data_shape=(1, 8, 8),
        hidden=(16,),
        latent_dim=6,
        family="gumbel",
        family_options={"categories": 3, "temperature": 0.7},
        prior="categorical",
    )
    assert model.prior.categories == 3 and float(model.prior.temperature) == pytest.approx(0.7)
    model = varfam.VAE.build(
        data_shape=(1, 8, 8), hidden=(16,), latent_dim=6, family="bernoulli", prior="categorical"
    )
    assert model.prior.binary
    # on its own the prior picks K = 10 when 10 divides D, else one group of D
    assert PRIORS.build("categorical", 20, (1, 8, 8)).categories == 10
    assert PRIORS.build("categorical", 6, (1, 8, 8)).categories == 6


