"""Likelihoods p(x|z): shapes, normalization, support checks and numerical stability.

- every registered likelihood (several option settings): batch (B,), event
  data_shape, ``log_prob`` per example, ``.mean`` and samples in the data's range,
  finite gradients, and a VAE built with it decodes to the right shape;
- each normalizes for a single value: discrete ones sum to 1 over their support
  (Bernoulli over {0, 1}, the 8-bit ones over the 256 levels k/255), continuous
  ones integrate to 1 (1-D quadrature, float64);
- ``.mean`` equals the mean computed from the normalized masses / densities;
- ``check_data`` refuses data outside the support with one line naming the fix;
- the continuous Bernoulli's normalizer and mean match 50-digit references for
  logits from -88 to 88, in float32 too, including around λ = 1/2 (η = 0) and
  the edges of the Taylor window;
- the discretized logistic's open edge bins and stable differences.
"""

from __future__ import annotations

import math

import mpmath
import pytest
import torch
from torch.distributions import ContinuousBernoulli

import varfam
from varfam.errors import VarfamError
from varfam.likelihoods import (
    DiscretizedLogisticMixture,
    StableContinuousBernoulli,
    check_eight_bit,
)
from varfam.likelihoods.bernoulli import (
    continuous_bernoulli_log_normalizer,
    continuous_bernoulli_mean,
)
from varfam.registry import LIKELIHOODS

DT = torch.float64
SHAPE = (1, 3, 2)
LEVELS = torch.arange(256, dtype=DT) / 255

#: every registered likelihood with options worth checking separately
CASES = [
    ("bernoulli", {}),
    ("continuous-bernoulli", {}),
    ("gaussian", {}),
    ("gaussian", {"variance": "fixed", "sigma": 0.5}),
    ("gaussian", {"variance": "pixel"}),
    ("laplace", {}),
    ("laplace", {"scale": "fixed", "b": 0.3}),
    ("laplace", {"scale": "pixel"}),
    ("discretized-logistic", {}),
    ("discretized-logistic", {"components": 1}),
    ("categorical", {}),
    ("autoregressive-bernoulli", {"kernel": 3, "width": 4}),
    ("autoregressive-bernoulli", {"kernel": 3, "width": 0}),
]
UNIT_RANGE = {"bernoulli", "continuous-bernoulli", "discretized-logistic", "categorical",
              "autoregressive-bernoulli"}


def build(name: str, options: dict | None = None, shape: tuple[int, ...] = SHAPE):
    return LIKELIHOODS.build(name, shape, options=options or {}).double()


def params_for(lik, batch: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, lik.params_per_value, *lik.data_shape)
    return scale * torch.randn(shape, generator=g, dtype=DT)


def eight_bit(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).to(DT) / 255


def test_registry_names_and_flags() -> None:
    names = set(LIKELIHOODS.names())
    assert {n for n, _ in CASES} <= names
    discrete = {n for n in names if LIKELIHOODS.get(n).discrete}
    assert {"bernoulli", "discretized-logistic", "categorical",
            "autoregressive-bernoulli"} <= discrete
    assert not {"continuous-bernoulli", "gaussian", "laplace"} & discrete
    for entry in LIKELIHOODS:
        assert entry.description, entry.name


# ------------------------------------------------------------------ contract
@pytest.mark.parametrize(("name", "options"), CASES)
def test_shapes_range_and_gradients(name: str, options: dict) -> None:
    lik = build(name, options)
    params = params_for(lik, 4).requires_grad_()
    px = lik(params)
    assert px.batch_shape == (4,) and px.event_shape == SHAPE
    x = eight_bit((4, *SHAPE))
    lik.check_data(x)
    lp = px.log_prob(x)
    assert lp.shape == (4,) and lp.dtype == DT and torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0
    for p in lik.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    mean = px.mean
    assert mean.shape == (4, *SHAPE) and torch.isfinite(mean).all()
    sample = px.sample((2,))
    assert sample.shape == (2, 4, *SHAPE)
    if name in UNIT_RANGE:
        assert mean.min() >= 0 and mean.max() <= 1
        assert sample.min() >= 0 and sample.max() <= 1


@pytest.mark.parametrize(("name", "options"), CASES)
def test_vae_decodes_with_every_likelihood(name: str, options: dict) -> None:
    model = varfam.VAE.build(
        data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, likelihood=name,
        likelihood_options=options,
    )
    x = eight_bit((3, 1, 4, 4)).float()
    px = model.decode(model.encode(x).rsample())
    assert px.log_prob(x).shape == (3,)
    assert model.sample(2).shape == (2, 1, 4, 4)


# ------------------------------------------------------------------ normalization
def test_bernoulli_sums_to_one() -> None:
    lik = build("bernoulli", shape=(1,))
    px = lik(torch.tensor([[[-30.0]], [[0.3]], [[25.0]]], dtype=DT))
    zero, one = torch.zeros(3, 1, dtype=DT), torch.ones(3, 1, dtype=DT)
    total = px.log_prob(zero).exp() + px.log_prob(one).exp()
    torch.testing.assert_close(total, torch.ones(3, dtype=DT))


@pytest.mark.parametrize("name", ["discretized-logistic", "categorical"])
@pytest.mark.parametrize("scale", [0.1, 1.0, 5.0])
def test_eight_bit_masses_sum_to_one(name: str, scale: float) -> None:
    """Σ over the 256 levels of one value = 1, for ordinary and extreme parameters."""
    lik = build(name, shape=(1,))
    params = params_for(lik, 6, seed=3, scale=scale)
    if name == "discretized-logistic":  # a mean far outside [-1, 1], a tiny and a huge scale
        k = lik.components
        params[0, k:2 * k] = 4.0
        params[1, 2 * k:] = -20.0
        params[2, 2 * k:] = 6.0
    px = lik(params)
    log_mass = px.log_prob(LEVELS.view(256, 1, 1).expand(256, 6, 1))  # (256, 6)
    assert torch.isfinite(log_mass).all()
    torch.testing.assert_close(log_mass.exp().sum(0), torch.ones(6, dtype=DT))
    mean = (log_mass.exp() * LEVELS.view(256, 1)).sum(0)
    torch.testing.assert_close(px.mean[:, 0], mean)


def test_discretized_logistic_edges_and_middle_bins() -> None:
    """Edge bins are open (-inf / +inf); a middle bin is a CDF difference (float64 reference)."""
    loc, log_s = torch.tensor([0.3, -0.9]), torch.tensor([-1.0, -3.0])
    d = DiscretizedLogisticMixture(
        torch.tensor([0.2, -0.4], dtype=DT), loc.to(DT), log_s.to(DT)
    )
    w = torch.softmax(torch.tensor([0.2, -0.4], dtype=DT), 0)
    s = log_s.to(DT).exp()

    def cdf(y: float) -> torch.Tensor:
        return (w * torch.sigmoid((y - loc.to(DT)) / s)).sum()

    h = 1 / 255
    torch.testing.assert_close(d.log_prob(torch.tensor(0.0, dtype=DT)).exp(), cdf(-1 + h))
    torch.testing.assert_close(d.log_prob(torch.tensor(1.0, dtype=DT)).exp(), 1 - cdf(1 - h))
    y = -1 + 2 * 100 / 255
    torch.testing.assert_close(
        d.log_prob(torch.tensor(100 / 255, dtype=DT)).exp(), cdf(y + h) - cdf(y - h)
    )


def test_discretized_logistic_is_stable_far_in_the_tails() -> None:
    """Masses of 1e-100 and below stay finite in float32, and so do their gradients."""
    loc = torch.tensor([[5.0], [-5.0], [0.0]], requires_grad=True)
    log_s = torch.full((3, 1), -6.5, requires_grad=True)
    d = DiscretizedLogisticMixture(torch.zeros(3, 1), loc, log_s)
    lp = d.log_prob(torch.tensor([0.0, 1.0, 0.5]))
    assert torch.isfinite(lp).all() and lp[0] < -1000 and lp[1] < -1000
    lp.sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(log_s.grad).all()


def test_discretized_logistic_samples_match_the_masses() -> None:
    torch.manual_seed(5)
    lik = build("discretized-logistic", shape=(1,))
    px = lik(params_for(lik, 2, seed=4))
    x = px.sample((40_000,))  # (N, 2, 1)
    assert torch.equal(x, torch.round(x * 255) / 255)
    probs = px.log_prob(LEVELS.view(256, 1, 1).expand(256, 2, 1)).exp()
    counts = torch.stack([(torch.round(x[:, i, 0] * 255).long() == torch.arange(256)[:, None])
                          .sum(1) for i in range(2)], 1).to(DT) / x.shape[0]
    # total variation between the empirical and the exact distribution is small
    assert (counts - probs).abs().sum(0).max() < 0.05
    torch.testing.assert_close(x.mean(0)[:, 0], px.mean[:, 0], atol=0.01, rtol=0)


@pytest.mark.parametrize(("name", "options"), [
    ("gaussian", {}), ("gaussian", {"variance": "fixed", "sigma": 0.7}),
    ("gaussian", {"variance": "pixel"}),
    ("laplace", {}), ("laplace", {"scale": "pixel"}), ("laplace", {"scale": "fixed", "b": 0.4}),
])
def test_continuous_densities_integrate_to_one(name: str, options: dict) -> None:
    lik = build(name, options, shape=(1,))
    px = lik(params_for(lik, 3, seed=6))
    loc, scale = px.base_dist.loc[:, 0], px.base_dist.scale[:, 0]
    grid = torch.linspace(-1, 1, 400_001, dtype=DT).view(-1, 1) * 40 * scale.max() + loc
    dens = px.log_prob(grid.unsqueeze(-1)).exp()  # (G, 3)
    total = torch.trapezoid(dens, grid, dim=0)
    torch.testing.assert_close(total, torch.ones(3, dtype=DT), atol=1e-6, rtol=0)
    torch.testing.assert_close(px.mean[:, 0], torch.trapezoid(dens * grid, grid, dim=0))


def test_continuous_bernoulli_integrates_to_one_and_mean() -> None:
    """∫_0^1 p(x|η) dx = 1 and ∫ x p = .mean, in float32 and float64, η from -80 to 80."""
    eta = torch.tensor([-80, -20, -3, -0.1001, -0.05, -1e-6, 0, 1e-4, 0.0999, 0.1, 0.5, 7, 80.0])
    x = torch.linspace(0, 1, 400_001, dtype=DT).view(-1, 1)
    for dtype in (torch.float32, torch.float64):
        lik = build("continuous-bernoulli", shape=(1,)).to(dtype)
        px = lik(eta.to(dtype).view(-1, 1, 1))
        dens = px.log_prob(x.to(dtype).unsqueeze(-1).expand(-1, eta.numel(), 1)).to(DT).exp()
        torch.testing.assert_close(torch.trapezoid(dens, x, dim=0), torch.ones(13, dtype=DT),
                                   atol=2e-5, rtol=0)
        torch.testing.assert_close(px.mean[:, 0].to(DT), torch.trapezoid(dens * x, x, dim=0),
                                   atol=2e-6, rtol=0)


# ------------------------------------------------------------------ continuous Bernoulli
def _reference(eta: float) -> tuple[float, float]:
    """g(η) = log((e^η - 1)/η) and g'(η) to 50 digits."""
    mpmath.mp.dps = 50
    e = mpmath.mpf(eta)
    if e == 0:
        return 0.0, 0.5
    g = mpmath.log(mpmath.expm1(e) / e)
    m = 1 / (1 - mpmath.exp(-e)) - 1 / e
    return float(g), float(m)


ETAS = [0.0, 1e-8, -1e-8, 1e-5, -3e-4, 2e-3, -0.0999, 0.0999, 0.1, -0.1, 0.1001, 0.25, -1.0,
        3.0, -15.0, 20.0, 45.0, -88.0, 88.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_continuous_bernoulli_normalizer_and_mean_match_references(dtype: torch.dtype) -> None:
    eta = torch.tensor(ETAS, dtype=dtype)
    g = continuous_bernoulli_log_normalizer(eta).double()
    m = continuous_bernoulli_mean(eta).double()
    ref = torch.tensor([_reference(e) for e in eta.double().tolist()], dtype=DT)
    eps = torch.finfo(dtype).eps
    # error of a few ulps of the magnitude involved (|g| + 1 for g, 1 for the mean)
    assert ((g - ref[:, 0]).abs() <= 8 * eps * (1 + ref[:, 0].abs())).all(), (g - ref[:, 0])
    assert ((m - ref[:, 1]).abs() <= 40 * eps).all(), (m - ref[:, 1])


def test_continuous_bernoulli_smooth_through_one_half() -> None:
    """Around λ = 1/2 the log-density and its gradient are smooth (no jump at the window)."""
    eta = torch.linspace(-0.3, 0.3, 6001, dtype=DT, requires_grad=True)
    d = StableContinuousBernoulli(logits=eta)
    lp = d.log_prob(torch.full_like(eta, 0.8))
    (grad,) = torch.autograd.grad(lp.sum(), eta)
    # d/dη log p(x|η) = x - E[x]
    torch.testing.assert_close(grad, 0.8 - continuous_bernoulli_mean(eta.detach()))
    second = grad.diff() / eta.detach().diff()  # -Var[x], smooth: ≈ -1/12 near 0
    assert (second.diff().abs() < 1e-5).all()
    assert abs(float(second[3000]) + 1 / 12) < 1e-3
    zero = torch.zeros((), dtype=DT, requires_grad=True)
    (g0,) = torch.autograd.grad(StableContinuousBernoulli(logits=zero).log_prob(
        torch.tensor(0.3, dtype=DT)), zero)
    assert float(g0) == pytest.approx(0.3 - 0.5)


def test_continuous_bernoulli_agrees_with_torch_where_torch_is_accurate() -> None:
    """float64, λ in [0.05, 0.45] ∪ [0.55, 0.95]: torch's λ-parameterized formulas are exact."""
    lam = torch.cat([torch.linspace(0.05, 0.45, 9), torch.linspace(0.55, 0.95, 9)]).to(DT)
    eta = torch.logit(lam)
    ours, theirs = StableContinuousBernoulli(logits=eta), ContinuousBernoulli(logits=eta)
    x = torch.rand(18, dtype=DT)
    torch.testing.assert_close(ours.log_prob(x), theirs.log_prob(x))
    torch.testing.assert_close(ours.mean, theirs.mean)
    torch.testing.assert_close(ours.entropy(), theirs.entropy())


# ------------------------------------------------------------------ location-scale options
def test_gaussian_scale_modes() -> None:
    fixed = build("gaussian", {"variance": "fixed", "sigma": 0.5}, shape=(2,))
    assert fixed.params_per_value == 1 and not list(fixed.parameters())
    params = torch.tensor([[[0.1, -0.2]]], dtype=DT)
    x = torch.tensor([[0.3, 0.4]], dtype=DT)
    expected = torch.distributions.Normal(params[0, 0], 0.5).log_prob(x[0]).sum()
    torch.testing.assert_close(fixed(params).log_prob(x)[0], expected)

    learned = build("gaussian", shape=(2,))
    assert learned.params_per_value == 1 and len(list(learned.parameters())) == 1
    torch.testing.assert_close(learned(params).base_dist.scale, torch.full((1, 2), 0.1, dtype=DT))

    pixel = build("gaussian", {"variance": "pixel", "sigma": 0.2, "min_sigma": 0.01}, shape=(2,))
    assert pixel.params_per_value == 2
    raw = torch.tensor([[[0.0, 0.0], [0.0, -50.0]]], dtype=DT)
    scale = pixel(raw).base_dist.scale[0]
    torch.testing.assert_close(scale, torch.tensor([0.2, 0.01], dtype=DT))  # start, floor


@pytest.mark.parametrize(("name", "options", "fragment"), [
    ("gaussian", {"variance": "learned"}, "variance must be one of fixed, global, pixel"),
    ("gaussian", {"sigma": -1.0}, "sigma must be a positive number"),
    ("gaussian", {"sigma": 0.1, "min_sigma": 0.2}, "floor"),
    ("laplace", {"scale": "x"}, "scale must be one of"),
    ("discretized-logistic", {"components": 0}, "components must be a positive integer"),
    ("gaussian", {"scale": "fixed"}, "its options: variance, sigma, min_sigma"),
])
def test_bad_options_are_user_errors(name: str, options: dict, fragment: str) -> None:
    with pytest.raises(VarfamError, match=fragment) as err:
        LIKELIHOODS.build(name, SHAPE, options=options)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ check_data
@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("bernoulli", 1.5, "needs data in \\[0, 1\\].*rescale"),
    ("continuous-bernoulli", -0.1, "needs data in \\[0, 1\\]"),
    ("discretized-logistic", 2.0, "needs data in \\[0, 1\\]"),
    ("categorical", 1.2, "needs data in \\[0, 1\\]"),
    ("categorical", 0.5, "needs 8-bit data.*discretized-logistic"),
    ("gaussian", math.nan, "NaN or infinite"),
    ("laplace", math.inf, "NaN or infinite"),
    ("bernoulli", math.nan, "NaN or infinite"),
])
def test_check_data_refuses_data_outside_the_support(name: str, value: float,
                                                     fragment: str) -> None:
    x = torch.rand(5, *SHAPE)
    x[2, 0, 1, 1] = value
    with pytest.raises(VarfamError, match=fragment) as err:
        build(name).check_data(x)
    assert "\n" not in str(err.value)


def test_check_data_accepts_supported_data() -> None:
    levels = torch.randint(0, 256, (50, *SHAPE), dtype=torch.uint8).float() / 255
    check_eight_bit(levels, "categorical")  # float32 k/255 values are accepted
    build("categorical").check_data(levels)
    build("discretized-logistic").check_data(torch.rand(5, *SHAPE))  # rounded to levels
    build("gaussian").check_data(torch.randn(5, *SHAPE) * 100)
    build("bernoulli").check_data(torch.rand(5, *SHAPE).round())
