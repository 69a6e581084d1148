"""Hyperspherical families (vmf, powerspherical) and the uniform-sphere prior, in float64."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import kl_divergence

import varfam
from varfam.errors import VarfamError
from varfam.families._sphere_math import (
    bessel_ratio,
    dw_dkappa,
    householder_rotate,
    log_bessel_iv,
    sample_vmf_w,
)
from varfam.families.spherical import (
    PowerSpherical,
    UniformSphere,
    VonMisesFisher,
    log_sphere_area,
)
from varfam.objectives import Elbo, kl_term
from varfam.registry import FAMILIES, PRIORS

f64 = torch.float64
mpmath.mp.dps = 30


def unit(*xs: float) -> torch.Tensor:
    return F.normalize(torch.tensor(xs, dtype=f64), dim=0)


def mp_log_iv(v: float, x: float) -> float:
    return float(mpmath.log(mpmath.besseli(v, x)))


def mp_mean_resultant(dim: int, kappa: float) -> float:
    return float(mpmath.besseli(dim / 2, kappa) / mpmath.besseli(dim / 2 - 1, kappa))


# ------------------------------------------------------------------ log Bessel


@pytest.mark.parametrize("v", [0.0, 0.5, 1.0, 2.5, 9.5, 31.0, 63.5, 300.0])
def test_log_bessel_matches_mpmath(v: float) -> None:
    xs = torch.logspace(-4, 6, 41, dtype=f64)
    got = log_bessel_iv(v, xs)
    ref = torch.tensor([mp_log_iv(v, x) for x in xs.tolist()], dtype=f64)
    assert torch.allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_log_bessel_derivative_is_bessel_ratio() -> None:
    xs = torch.tensor([1e-3, 0.7, 12.0, 39.9, 40.1, 700.0, 1e4], dtype=f64, requires_grad=True)
    for v in (0.0, 0.5, 4.0, 50.0):
        (grad,) = torch.autograd.grad(log_bessel_iv(v, xs).sum(), xs)
        ref = [
            float(mpmath.besseli(v, x, derivative=1) / mpmath.besseli(v, x)) for x in xs.tolist()
        ]
        assert torch.allclose(grad, torch.tensor(ref, dtype=f64), rtol=1e-10, atol=1e-12)


def test_bessel_ratio_is_mean_resultant_length() -> None:
    for dim in (2, 3, 10, 100):
        ks = [0.01, 1.0, 30.0, 500.0, 1e4]
        got = bessel_ratio(dim / 2 - 1, torch.tensor(ks, dtype=f64))
        ref = torch.tensor([mp_mean_resultant(dim, k) for k in ks], dtype=f64)
        assert torch.allclose(got, ref, rtol=1e-11)


# ------------------------------------------------------------------ sampler and its gradient


def mp_dw_dkappa(w: float, kappa: float, dim: int) -> float:
    """dw/dkappa = int_w^1 (s - A) p(s)/p(w) ds at 30 digits."""
    a, w, kappa = mpmath.mpf(dim - 3) / 2, mpmath.mpf(w), mpmath.mpf(kappa)
    half = mpmath.mpf(dim) / 2
    mean = mpmath.besseli(half, kappa) / mpmath.besseli(half - 1, kappa)

    def integrand(s):
        if 1 - s * s <= 0:
            return mpmath.mpf(0)
        return (s - mean) * mpmath.exp(kappa * (s - w)) * ((1 - s * s) / (1 - w * w)) ** a

    return float(mpmath.quad(integrand, [w, (w + 1) / 2, 1]))


@pytest.mark.parametrize("dim", [2, 3, 6])
def test_implicit_gradient_matches_cdf_derivative(dim: int) -> None:
    for kappa in (0.3, 8.0, 900.0):
        k = torch.full((4,), kappa, dtype=f64)
        w = sample_vmf_w(k, dim).detach()
        got = dw_dkappa(w, k, dim)
        ref = torch.tensor([mp_dw_dkappa(x, kappa, dim) for x in w.tolist()], dtype=f64)
        assert torch.allclose(got, ref, rtol=1e-7)
        assert (got > 0).all()  # w is stochastically increasing in kappa


def mp_cdf(w: float, kappa: float, dim: int) -> float:
    a = mpmath.mpf(dim - 3) / 2

    def dens(s):
        return mpmath.exp(kappa * (s - 1)) * (1 - s * s) ** a if 1 - s * s > 0 else 0

    return float(mpmath.quad(dens, [-1, w]) / mpmath.quad(dens, [-1, w, 1]))


@pytest.mark.parametrize(("dim", "kappa"), [(2, 1.5), (3, 20.0), (8, 4.0)])
def test_wood_sampler_matches_marginal_cdf(dim: int, kappa: float) -> None:
    n = 40000
    w = sample_vmf_w(torch.full((n,), kappa, dtype=f64), dim).detach()
    assert ((w > -1) & (w < 1)).all()
    for q in (0.05, 0.25, 0.5, 0.75, 0.95):
        x = float(torch.quantile(w, q))
        assert abs(mp_cdf(x, kappa, dim) - q) < 2.0 / math.sqrt(n)  # KS bound, p ~ 1e-3


def test_householder_maps_e1_to_loc_and_is_orthogonal() -> None:
    loc = F.normalize(torch.randn(5, 4, dtype=f64), dim=-1)
    e1 = torch.zeros(5, 4, dtype=f64)
    e1[:, 0] = 1
    assert torch.allclose(householder_rotate(e1, loc), loc, atol=1e-14)
    y = torch.randn(5, 4, dtype=f64)
    assert torch.allclose(householder_rotate(y, loc).norm(dim=-1), y.norm(dim=-1))
    assert torch.allclose(householder_rotate(y, e1), y)  # loc = e1: the identity


# ------------------------------------------------------------------ densities integrate to one

DISTS = [VonMisesFisher, PowerSpherical]


@pytest.mark.parametrize("cls", DISTS)
def test_density_integrates_to_one_on_circle(cls) -> None:
    n = 200_000
    theta = torch.arange(n, dtype=f64) * (2 * math.pi / n)
    z = torch.stack([theta.cos(), theta.sin()], -1).unsqueeze(1)  # (n, 1, 2)
    kappas = torch.tensor([0.3, 4.0, 80.0, 2000.0], dtype=f64)
    q = cls(unit(0.3, -1.0).expand(4, 2), kappas)
    total = q.log_prob(z).exp().sum(0) * (2 * math.pi / n)
    assert torch.allclose(total, torch.ones(4, dtype=f64), atol=1e-9)


def s2_quadrature(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """Points (n*n, 3) and weights on S^2: Gauss-Legendre in cos(theta) x trapezoid in phi."""
    c, wc = np.polynomial.legendre.leggauss(n)
    phi = np.arange(2 * n) * (np.pi / n)
    c, phi = np.meshgrid(c, phi, indexing="ij")
    s = np.sqrt(1 - c * c)
    pts = np.stack([s * np.cos(phi), s * np.sin(phi), c], -1).reshape(-1, 3)
    weights = np.repeat(wc, 2 * n) * (np.pi / n)
    return torch.tensor(pts), torch.tensor(weights)


@pytest.mark.parametrize("cls", DISTS)
def test_density_integrates_to_one_on_s2(cls) -> None:
    pts, weights = s2_quadrature()
    kappas = torch.tensor([0.5, 10.0, 150.0], dtype=f64)
    q = cls(unit(1.0, 2.0, 0.5).expand(3, 3), kappas)
    total = (q.log_prob(pts.unsqueeze(1)).exp() * weights.unsqueeze(1)).sum(0)
    assert torch.allclose(total, torch.ones(3, dtype=f64), atol=1e-8)
    prior = UniformSphere(3, torch.zeros((), dtype=f64))
    assert float((prior.log_prob(pts).exp() * weights).sum()) == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------ moments, KL, entropy


@pytest.mark.parametrize("dim", [2, 3, 5, 12])
def test_vmf_mean_resultant_matches_bessel_ratio(dim: int) -> None:
    kappas = [0.5, 5.0, 60.0]
    loc = F.normalize(torch.randn(dim, dtype=f64), dim=0)
    q = VonMisesFisher(loc.expand(3, dim), torch.tensor(kappas, dtype=f64))
    z = q.sample((40000,))
    w = z @ loc
    ref = torch.tensor([mp_mean_resultant(dim, k) for k in kappas], dtype=f64)
    se = w.std(0) / math.sqrt(z.shape[0])
    assert ((w.mean(0) - ref).abs() < 5 * se).all()
    assert torch.allclose(q.mean @ loc, ref, rtol=1e-12)
    # the whole mean vector is A_D(kappa) mu (the tangent part averages out)
    err = (z.mean(0) - q.mean).abs().max()
    assert float(err) < 5 / math.sqrt(z.shape[0])


def test_powerspherical_mean_matches_closed_form() -> None:
    dim, kappas = 4, torch.tensor([0.5, 5.0, 60.0], dtype=f64)
    loc = unit(1.0, -1.0, 0.5, 2.0)
    q = PowerSpherical(loc.expand(3, dim), kappas)
    w = q.sample((40000,)) @ loc
    ref = kappas / (kappas + dim - 1)
    assert ((w.mean(0) - ref).abs() < 5 * w.std(0) / 200).all()
    assert torch.allclose(q.mean @ loc, ref)


@pytest.mark.parametrize("cls", DISTS)
@pytest.mark.parametrize("dim", [2, 3, 7])
def test_kl_to_uniform_and_entropy_match_monte_carlo(cls, dim: int) -> None:
    kappas = torch.tensor([0.2, 3.0, 40.0], dtype=f64)
    q = cls(F.normalize(torch.randn(3, dim, dtype=f64), dim=-1), kappas)
    p = UniformSphere(dim, torch.zeros((), dtype=f64))
    z = q.sample((40000,))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    se = log_ratio.std(0) / math.sqrt(z.shape[0])
    kl = kl_divergence(q, p)
    assert ((kl - log_ratio.mean(0)).abs() < 5 * se + 1e-12).all()
    assert (kl > 0).all()
    assert torch.allclose(q.entropy(), log_sphere_area(dim) - kl)


def test_kl_goes_to_zero_as_concentration_vanishes() -> None:
    for cls in DISTS:
        q = cls(unit(0.0, 0.0, 1.0), torch.tensor(1e-6, dtype=f64))
        assert float(kl_divergence(q, UniformSphere(3))) == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------ unbiased gradients


def mp_log_c(dim: int, kappa) -> mpmath.mpf:
    v = mpmath.mpf(dim) / 2 - 1
    return (
        v * mpmath.log(kappa)
        - mpmath.mpf(dim) / 2 * mpmath.log(2 * mpmath.pi)
        - mpmath.log(mpmath.besseli(v, kappa))
    )


def mp_expected_exp(dim: int, m: list, kappa, a: list) -> mpmath.mpf:
    """E[exp(a . z)] for z ~ vMF(m / |m|, kappa): C_D(kappa) / C_D(|kappa mu + a|)."""
    m = [mpmath.mpf(x) for x in m]
    norm = mpmath.sqrt(sum(x * x for x in m))
    r = mpmath.sqrt(sum((kappa * x / norm + b) ** 2 for x, b in zip(m, a)))
    return mpmath.exp(mp_log_c(dim, kappa) - mp_log_c(dim, r))


@pytest.mark.parametrize(("dim", "kappa"), [(2, 2.0), (3, 5.0), (6, 1.5), (3, 40.0)])
def test_vmf_pathwise_gradients_are_unbiased(dim: int, kappa: float) -> None:
    """Mean of per-sample grads of f(z) = exp(a.z) equals a finite difference of E f."""
    n = 40000
    a = [0.7, -0.4] + [0.3] * (dim - 2)
    m0 = [0.5, 1.0] + [-0.2] * (dim - 2)
    k = torch.full((n,), kappa, dtype=f64, requires_grad=True)
    m = torch.tensor(m0, dtype=f64).repeat(n, 1).requires_grad_()
    z = VonMisesFisher(F.normalize(m, dim=-1), k).rsample()
    f = torch.exp(z @ torch.tensor(a, dtype=f64))
    gk, gm = torch.autograd.grad(f.sum(), [k, m])

    h = mpmath.mpf("1e-12")
    up, down = mp_expected_exp(dim, m0, kappa + h, a), mp_expected_exp(dim, m0, kappa - h, a)
    fd_k = (up - down) / (2 * h)
    assert abs(float(gk.mean()) - float(fd_k)) < 4.5 * float(gk.std()) / math.sqrt(n)
    for i in range(dim):
        up, down = list(m0), list(m0)
        up[i] += h
        down[i] -= h
        fd = (mp_expected_exp(dim, up, kappa, a) - mp_expected_exp(dim, down, kappa, a)) / (2 * h)
        assert abs(float(gm[:, i].mean()) - float(fd)) < 4.5 * float(gm[:, i].std()) / math.sqrt(n)


def test_powerspherical_concentration_gradient_is_unbiased() -> None:
    dim, kappa, n = 3, 4.0, 40000
    loc = unit(0.0, 1.0, 1.0)
    k = torch.full((n,), kappa, dtype=f64, requires_grad=True)
    w = PowerSpherical(loc.expand(n, dim), k).rsample() @ loc
    (g,) = torch.autograd.grad(w.sum(), k)
    exact = (dim - 1) / (kappa + dim - 1) ** 2  # d/dkappa of E[w] = kappa / (kappa + D - 1)
    assert abs(float(g.mean()) - exact) < 4.5 * float(g.std()) / math.sqrt(n)


# ------------------------------------------------------------------ families, prior, model


@pytest.mark.parametrize("name", ["vmf", "powerspherical"])
def test_family_shapes_support_and_kl(name: str) -> None:
    fam = FAMILIES.build(name, 16, 5).double()
    assert fam.default_prior == "uniform-sphere" and fam.latent_support == "sphere"
    h = torch.randn(7, 16, dtype=f64) * 5
    q = fam(h)
    assert q.batch_shape == (7,) and q.event_shape == (5,)
    z = q.rsample((3,))
    assert z.shape == (3, 7, 5) and q.log_prob(z).shape == (3, 7)
    assert torch.allclose(z.norm(dim=-1), torch.ones(3, 7, dtype=f64))
    assert ((q.concentration >= 1.0) & (q.concentration <= 1e4)).all()
    assert torch.allclose(fam.location(h).norm(dim=-1), torch.ones(7, dtype=f64))
    prior = PRIORS.build("uniform-sphere", 5, (1, 8, 8))()
    kl = kl_term(q, prior, z[0])
    assert torch.allclose(kl, kl_divergence(q, prior))  # the closed form is used


@pytest.mark.parametrize("cls", DISTS)
def test_float32_large_concentration_stays_finite(cls) -> None:
    for dim in (2, 64):
        q = cls(F.normalize(torch.randn(4, dim), dim=-1), torch.tensor([1.0, 50.0, 3e3, 1e4]))
        z = q.rsample((2,))
        assert z.dtype == torch.float32 and torch.isfinite(z).all()
        assert torch.isfinite(q.log_prob(z)).all()
        assert torch.isfinite(kl_divergence(q, UniformSphere(dim))).all()


def test_uniform_sphere_prior() -> None:
    prior = PRIORS.build("uniform-sphere", 4, (1, 8, 8))
    p = prior()
    assert p.batch_shape == () and p.event_shape == (4,)
    z = p.sample((20000,))
    assert torch.allclose(z.norm(dim=-1), torch.ones(20000))
    assert z.mean(0).abs().max() < 0.03
    assert torch.allclose(p.log_prob(z), torch.full((20000,), -math.log(2 * math.pi**2)))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FAMILIES.build("vmf", 8, 1), "latent_dim >= 2"),
        (lambda: FAMILIES.build("powerspherical", 8, 1), "latent_dim >= 2"),
        (lambda: PRIORS.build("uniform-sphere", 1, (1, 8, 8)), "latent_dim >= 2"),
        (
            lambda: FAMILIES.build("vmf", 8, 3, options={"min_concentration": 0}),
            "min_concentration",
        ),
        (
            lambda: FAMILIES.build("vmf", 8, 3, options={"max_concentration": 0.5}),
            "max_concentration",
        ),
    ],
)
def test_user_errors(build, message: str) -> None:
    with pytest.raises(VarfamError, match=message):
        build()


@pytest.mark.parametrize("name", ["vmf", "powerspherical"])
def test_the_elbo_reaches_the_concentration_head(name: str) -> None:
    """(Training every family is tests/test_compose.py; this is the sphere's own head.)"""
    model = varfam.VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=3, family=name)
    Elbo()(model, torch.rand(32, 1, 8, 8)).loss.backward()
    assert model.family.concentration.weight.grad.abs().sum() > 0
