"""The contract every registered variational family meets, tested on each of them.

Every name in ``varfam.registry.FAMILIES`` is built with
``FAMILIES.build(name, FEATURES, latent_dim, options=contract_options)`` in float64
and checked for: shapes of ``rsample``/``log_prob`` over batch and sample shapes;
gradients of ``rsample`` reaching every parameter; the density integrating to one
over the family's ``latent_support`` (with latent_dim = 2); a registered closed-form
KL matching Monte Carlo; ``location``; and a safetensors save/load round trip.

Hook for family authors: a family class may set ``contract_options``, a class
attribute dict of options the contract passes to its constructor (for example a
relaxed categorical with ``{"categories": 2}`` so that latent_dim 2 is one
2-category variable, or a higher temperature so the density is quadrature-friendly).
The same options are used to build the VAE in the save/load test. The contract
uses latent_dim 4 for shapes, gradients, KL and location, and latent_dim 2 for
normalization and save/load, so a family's options must allow both.

Quadrature (``latent_support``):
- ``"real"``: midpoint rule on a 2-D box around the sample quantiles (0.1% and 99.9%,
  widened twofold about their centre, 300 x 300 cells);
- ``"sphere"``: uniform grid in the angle on the circle S^1, density w.r.t. arc length;
- ``"simplex"``: the first coordinate x of (x, 1 - x), through x = sigmoid(s);
- ``"unit-cube"``: (0, 1)^2 through a sigmoid in each coordinate.
The sigmoid substitution integrates the x^(a-1) endpoint singularities of relaxed
densities accurately; a family whose density is too sharp for these grids should
set ``contract_options`` that make it moderate.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import kl_divergence

import varfam  # noqa: F401  (registers every built-in part)
from _quadrature import logit_axis, mass, sample_box
from varfam.objectives import stop_gradient_log_prob
from varfam.registry import FAMILIES, PRIORS
from varfam.runs.checkpoint import load_model, save_model

FEATURES = 6
LATENT = 4
NAMES = FAMILIES.names()


def contract_options(name: str) -> dict:
    return dict(getattr(FAMILIES.get(name), "contract_options", {}))


def build(name: str, latent_dim: int = LATENT) -> torch.nn.Module:
    torch.manual_seed(1)
    family = FAMILIES.build(name, FEATURES, latent_dim, options=contract_options(name))
    return family.double()


def features(batch: int, seed: int = 2) -> torch.Tensor:
    """Small fixed features h (B, F): heads start near zero, so parameters are moderate."""
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, FEATURES, generator=g, dtype=torch.float64)


def test_registry_has_families() -> None:
    assert {"diagonal", "full", "lowrank", "mixture", "laplace", "student"} <= set(NAMES)
    for entry in FAMILIES:
        assert entry.description and entry.reference, entry.name


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("sample_shape", [(), (3,), (2, 4)])
def test_shapes(name: str, batch: int, sample_shape: tuple[int, ...]) -> None:
    q = build(name)(features(batch))
    assert q.batch_shape == (batch,) and q.event_shape == (LATENT,)
    assert q.has_rsample
    z = q.rsample(sample_shape)
    assert z.shape == (*sample_shape, batch, LATENT)
    assert z.dtype == torch.float64
    lp = q.log_prob(z)
    assert lp.shape == (*sample_shape, batch)
    assert torch.isfinite(lp).all()
    assert q.sample(sample_shape).shape == z.shape


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("name", NAMES)
def test_rsample_gradients_reach_every_parameter(name: str) -> None:
    """The two paths an ELBO uses: a smooth function of z (the decoder) and log q(z).

    The loss is ``Σ w·sin(z) + 0.1·Σ z² + Σ log q(z)`` with fixed random ``w``; a
    location parameter is invisible to ``log q(rsample())`` alone (it cancels for
    location-scale families), so both terms are needed.
    """
    family = build(name)
    h = features(5)
    q = family(h)
    z = q.rsample((3,))
    assert z.requires_grad and z.grad_fn is not None
    w = torch.randn(z.shape, generator=torch.Generator().manual_seed(3), dtype=z.dtype)
    loss = (w * torch.sin(z)).sum() + 0.1 * (z**2).sum() + q.log_prob(z).sum()
    loss.backward()
    params = [(n, p) for n, p in family.named_parameters() if p.numel() > 0]
    assert params, f"family {name} has no parameters"
    for pname, p in params:
        assert p.grad is not None, f"{name}.{pname} gets no gradient from rsample/log_prob"
        assert torch.isfinite(p.grad).all(), f"{name}.{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}.{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", NAMES)
def test_stop_gradient_log_prob_reaches_only_z(name: str) -> None:
    """STL and DReG score z under q with stop-gradient parameters: same value, no ∇θ.

    Families whose distribution runs a network lazily inside ``log_prob`` (IAF, Real
    NVP, the hierarchical family) once leaked parameter gradients here.
    """
    family = build(name)
    h = features(5)
    q = family(h)
    z = q.rsample((3,)).detach().requires_grad_()
    log_q = stop_gradient_log_prob(family, h, z)
    torch.testing.assert_close(log_q, q.log_prob(z), rtol=0, atol=0)
    log_q.sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    leaked = [n for n, p in family.named_parameters() if p.grad is not None]
    assert not leaked, f"{name}: stop-gradient log q still reaches {leaked}"


# ------------------------------------------------------------------ normalization
@pytest.mark.parametrize("name", NAMES)
def test_density_integrates_to_one(name: str) -> None:
    family = build(name, latent_dim=2)
    with torch.no_grad():
        q = family(features(1))

    def log_density(z2: torch.Tensor) -> torch.Tensor:  # (N, 2) → (N,)
        return q.log_prob(z2.unsqueeze(1)).squeeze(1)

    support = family.latent_support
    if support == "real":
        with torch.no_grad():
            samples = q.sample((100_000,)).squeeze(1)
        total = mass(log_density, sample_box(samples, 300, widen=1.0, q=1e-3))
    elif support == "sphere":
        n = 4000
        angle = torch.arange(n, dtype=torch.float64) * (2 * math.pi / n)
        circle = torch.stack([torch.cos(angle), torch.sin(angle)], -1)
        with torch.no_grad():
            total = float(torch.exp(log_density(circle)).sum()) * 2 * math.pi / n
    elif support == "simplex":  # (x, 1 - x) with x = sigmoid(s)
        s, log_jac = logit_axis(8000)
        total = mass(lambda u: log_density(torch.cat([torch.sigmoid(u), torch.sigmoid(-u)], -1)),
                     [s], [log_jac])
    elif support == "unit-cube":
        s, log_jac = logit_axis(800, half_width=30.0)
        total = mass(lambda u: log_density(torch.sigmoid(u)), [s, s], [log_jac, log_jac])
    else:
        pytest.fail(f"family {name} declares an unknown latent_support {support!r}")
    assert abs(total - 1.0) < 1e-2, f"{name}: density integrates to {total}"


# ------------------------------------------------------------------ KL
def _priors_to_check(name: str) -> list[str]:
    default = FAMILIES.get(name).default_prior
    names = ["standard"]
    if default != "standard" and default in PRIORS:
        names.append(default)
    return names


@pytest.mark.parametrize("name", NAMES)
def test_registered_kl_matches_monte_carlo(name: str) -> None:
    """Where ``kl_divergence(q, p)`` is registered, it equals E_q[log q - log p] (4 s.e.)."""
    with torch.no_grad():
        q = build(name)(features(3))
        checked = []
        for prior_name in _priors_to_check(name):
            p = PRIORS.build(prior_name, LATENT, (1, 8, 8)).double()()
            try:
                kl = kl_divergence(q, p)
            except NotImplementedError:
                continue
            torch.manual_seed(4)
            z = q.sample((20_000,))
            diff = q.log_prob(z) - p.log_prob(z)
            mc, se = diff.mean(0), diff.std(0) / math.sqrt(z.shape[0])
            assert kl.shape == (3,)
            assert (kl - mc).abs().le(4 * se + 1e-6).all(), (
                f"{name} vs {prior_name} prior: closed form {kl.tolist()}, MC {mc.tolist()} ± {se}"
            )
            checked.append(prior_name)
    if not checked:
        pytest.skip(f"no closed-form KL registered for {name}; objectives use Monte Carlo")


# ------------------------------------------------------------------ location
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("batch", [1, 5])
def test_location(name: str, batch: int) -> None:
    family = build(name)
    loc = family.location(features(batch))
    assert loc.shape == (batch, LATENT)
    assert torch.isfinite(loc).all()


# ------------------------------------------------------------------ save / load
@pytest.mark.parametrize("name", NAMES)
def test_save_load_keeps_log_prob(name: str, tmp_path) -> None:
    """Weights through safetensors and config.json rebuild the same q(z|x), bit for bit."""
    default = FAMILIES.get(name).default_prior
    prior = default if default in PRIORS else "standard"
    torch.manual_seed(5)
    model = varfam.VAE.build(
        data_shape=(1, 8, 8),
        hidden=(16,),
        latent_dim=2,
        family=name,
        family_options=contract_options(name),
        prior=prior,
    ).eval()
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        q1, q2 = model.encode(x), loaded.encode(x)
        torch.manual_seed(7)
        z1 = q1.rsample((3,))
        torch.manual_seed(7)
        z2 = q2.rsample((3,))
        assert torch.equal(z1, z2)
        # each on its own sample (the path the ELBO takes; flows may use cached inverses) ...
        assert torch.equal(q1.log_prob(z1), q2.log_prob(z2))
        # ... and both on the same fresh tensor (the path of an arbitrary point)
        z = z1.clone()
        assert torch.equal(q1.log_prob(z), q2.log_prob(z.clone()))
        assert torch.equal(model.encode_location(x), loaded.encode_location(x))
