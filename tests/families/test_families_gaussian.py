"""The mathematics of the Gaussian, mixture and heavy-tailed families, in float64.

- ``full``: L is a Cholesky factor, the covariance is L Lᵀ, ``log_prob`` equals the
  explicit Gaussian formula, and with its off-diagonal head at zero it is ``diagonal``.
- ``lowrank``: covariance F Fᵀ + diag(d), ``log_prob`` by the explicit formula, ``rank``.
- registered KLs (full / lowrank → diagonal Gaussian prior) equal torch's
  MultivariateNormal↔MultivariateNormal KL; non-Gaussian priors fall back to Monte Carlo.
- ``mixture``: the implicit-reparameterization gradient equals finite differences of
  the inverse distributional transform per sample (1-D and 2-D), its expectation
  equals the gradient of a closed-form E[f(z)], and K = 1 is the Gaussian trick.
- ``student``: learned df ≥ 2, fixed df by option, the t density, df gradients.
- ``laplace``: closed-form KL to N(0, 1).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import (
    Independent,
    Laplace,
    MultivariateNormal,
    Normal,
    StudentT,
    kl_divergence,
)

import varfam
from varfam.errors import VarfamError
from varfam.families.mixture import DiagonalGaussianMixture, mixture_of_diagonal_gaussians
from varfam.objectives import Elbo, kl_per_dimension, kl_term
from varfam.registry import FAMILIES

F = 5
DT = torch.float64


def family(name: str, latent_dim: int, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return FAMILIES.build(name, F, latent_dim, options=options).double()


def h(batch: int, seed: int = 1, scale: float = 0.5) -> torch.Tensor:
    return scale * torch.randn(batch, F, generator=torch.Generator().manual_seed(seed), dtype=DT)


def gaussian_log_density(z: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> float:
    """log N(z; mean, cov) by the textbook formula, in numpy float64."""
    d = z - mean
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    return float(-0.5 * (len(z) * math.log(2 * math.pi) + logdet + d @ np.linalg.solve(cov, d)))


# ------------------------------------------------------------------ full covariance
def test_full_scale_tril_and_log_prob_match_explicit_formula() -> None:
    fam = family("full", 4)
    hh = h(3)
    q = fam(hh)
    L = q.scale_tril
    assert torch.equal(L, torch.tril(L))
    assert (torch.diagonal(L, dim1=-2, dim2=-1) > 0).all()
    assert (L.tril(-1).abs() > 0).sum() == 3 * 6  # every strictly-lower entry is free
    torch.testing.assert_close(q.covariance_matrix, L @ L.mT)
    z = q.sample((2,))
    lp = q.log_prob(z)
    for s in range(2):
        for b in range(3):
            cov = (L[b] @ L[b].T).detach().numpy()
            expected = gaussian_log_density(z[s, b].numpy(), q.loc[b].detach().numpy(), cov)
            assert lp[s, b].item() == pytest.approx(expected, abs=1e-10)


def test_full_samples_have_covariance_l_lt() -> None:
    q = family("full", 3)(h(1))
    torch.manual_seed(3)
    with torch.no_grad():
        z = q.rsample((200_000,))[:, 0]
    torch.testing.assert_close(z.mean(0), q.loc[0].detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), q.covariance_matrix[0].detach(), atol=0.03, rtol=0)


def test_full_without_off_diagonal_is_the_diagonal_family() -> None:
    full, diag = family("full", 3), family("diagonal", 3)
    full.loc.load_state_dict(diag.loc.state_dict())
    full.log_var.load_state_dict(diag.log_var.state_dict())
    with torch.no_grad():
        full.tril.weight.zero_()
        full.tril.bias.zero_()
    hh = h(4)
    z = diag(hh).sample((5,))
    torch.testing.assert_close(full(hh).log_prob(z), diag(hh).log_prob(z))


def test_full_with_one_dimension() -> None:
    fam = family("full", 1)
    assert fam.tril is None
    q = fam(h(2))
    assert q.rsample((3,)).shape == (3, 2, 1)


# ------------------------------------------------------------------ low rank
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_lowrank_covariance_is_factor_factor_t_plus_diag(rank: int) -> None:
    fam = family("lowrank", 4, rank=rank)
    hh = h(3)
    q = fam(hh)
    d = torch.exp(fam.log_var(hh))
    W = d.sqrt().unsqueeze(-1) * fam.cov_factor(hh).view(3, 4, rank)  # F = diag(sqrt d) G
    assert q.cov_factor.shape == (3, 4, rank)
    torch.testing.assert_close(q.covariance_matrix, W @ W.mT + torch.diag_embed(d))
    z = q.sample()
    lp = q.log_prob(z)
    for b in range(3):
        cov = (W[b] @ W[b].T + torch.diag(d[b])).detach().numpy()
        expected = gaussian_log_density(z[b].numpy(), q.loc[b].detach().numpy(), cov)
        assert lp[b].item() == pytest.approx(expected, abs=1e-10)


def test_lowrank_rank_option() -> None:
    assert family("lowrank", 4).rank == 2  # the default
    model = varfam.VAE.build(
        data_shape=(1, 8, 8),
        hidden=(16,),
        latent_dim=5,
        family="lowrank",
        family_options={"rank": 3},
    )
    assert model.family.cov_factor.out_features == 5 * 3
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(VarfamError, match="rank"):
            FAMILIES.build("lowrank", F, 4, options={"rank": bad})


# ------------------------------------------------------------------ registered KLs
def _as_mvn(p: Independent) -> MultivariateNormal:
    scale = p.base_dist.scale
    return MultivariateNormal(p.base_dist.loc, covariance_matrix=torch.diag_embed(scale**2))


DIAGONAL_PRIORS = {
    "standard": lambda: Independent(Normal(torch.zeros(4, dtype=DT), torch.ones(4, dtype=DT)), 1),
    "shifted": lambda: Independent(
        Normal(
            torch.tensor([0.5, -1.0, 0.0, 2.0], dtype=DT),
            torch.tensor([0.5, 2.0, 1.0, 1.5], dtype=DT),
        ),
        1,
    ),
    "batched": lambda: Independent(
        Normal(torch.randn(3, 4, dtype=DT), torch.rand(3, 4, dtype=DT) + 0.5), 1
    ),
}


@pytest.mark.parametrize("name", ["full", "lowrank"])
@pytest.mark.parametrize("prior", list(DIAGONAL_PRIORS))
def test_registered_kl_equals_mvn_kl(name: str, prior: str) -> None:
    q = family(name, 4)(h(3))
    p = DIAGONAL_PRIORS[prior]()
    kl = kl_divergence(q, p)
    assert kl.shape == (3,)
    mvn_q = MultivariateNormal(q.loc, covariance_matrix=q.covariance_matrix)
    torch.testing.assert_close(kl, kl_divergence(mvn_q, _as_mvn(p)))
    z = q.rsample()
    torch.testing.assert_close(kl_term(q, p, z), kl)  # the objectives take the closed form
    kl.sum().backward()


@pytest.mark.parametrize("name", ["full", "lowrank"])
def test_non_gaussian_prior_falls_back_to_monte_carlo(name: str) -> None:
    q = family(name, 4)(h(3))
    p = Independent(Laplace(torch.zeros(4, dtype=DT), torch.ones(4, dtype=DT)), 1)
    with pytest.raises(NotImplementedError):
        kl_divergence(q, p)
    z = q.rsample()
    torch.testing.assert_close(kl_term(q, p, z), q.log_prob(z) - p.log_prob(z))


# ------------------------------------------------------------------ mixture
def _conditional_cdf(z: torch.Tensor, d: int, logits, loc, scale) -> torch.Tensor:
    """F_d(z_d | z_<d) for z (N, D) under Σ_k softmax(logits)_k N(loc_k, diag(scale_k²))."""
    log_w = torch.log_softmax(logits, -1) + Normal(loc[:, :d], scale[:, :d]).log_prob(
        z[:, None, :d]
    ).sum(-1)
    w = torch.softmax(log_w, -1)
    return (w * Normal(loc[:, d], scale[:, d]).cdf(z[:, d, None])).sum(-1)


def _inverse_transform(u: torch.Tensor, logits, loc, scale) -> torch.Tensor:
    """z with F_d(z_d | z_<d) = u_d for every d, by bisection (float64, to ~1e-13)."""
    z = torch.zeros_like(u)
    for d in range(u.shape[1]):
        lo = torch.full_like(u[:, 0], -40.0)
        hi = torch.full_like(u[:, 0], 40.0)
        for _ in range(100):
            mid = (lo + hi) / 2
            z[:, d] = mid
            below = _conditional_cdf(z, d, logits, loc, scale) < u[:, d]
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        z[:, d] = (lo + hi) / 2
    return z


def _unpack(theta: torch.Tensor, K: int, D: int):
    return theta[:K], theta[K : K + K * D].view(K, D), theta[K + K * D :].view(K, D).exp()


@pytest.mark.parametrize("D", [1, 2])
def test_mixture_rsample_gradient_equals_finite_differences(D: int) -> None:
    """Per sample, ∂z/∂θ of rsample equals ∂/∂θ of the inverse transform at fixed u."""
    K, N = 3, 8
    g = torch.Generator().manual_seed(5)
    theta = torch.cat(
        [
            torch.randn(K, generator=g, dtype=DT),
            2 * torch.randn(K * D, generator=g, dtype=DT),
            0.5 * torch.randn(K * D, generator=g, dtype=DT),
        ]
    ).requires_grad_()
    torch.manual_seed(6)
    z = mixture_of_diagonal_gaussians(*_unpack(theta, K, D)).rsample((N,))
    with torch.no_grad():
        params = _unpack(theta, K, D)
        u = torch.stack([_conditional_cdf(z, d, *params) for d in range(D)], -1)
        torch.testing.assert_close(_inverse_transform(u, *params), z, atol=1e-10, rtol=0)
    autograd = torch.stack(
        [
            torch.autograd.grad(z[n, d], theta, retain_graph=True)[0]
            for n in range(N)
            for d in range(D)
        ]
    )
    eps = 1e-6
    finite = []
    with torch.no_grad():
        for i in range(theta.numel()):
            step = torch.zeros_like(theta)
            step[i] = eps
            plus = _inverse_transform(u, *_unpack(theta + step, K, D))
            minus = _inverse_transform(u, *_unpack(theta - step, K, D))
            finite.append(((plus - minus) / (2 * eps)).reshape(-1))
    torch.testing.assert_close(autograd, torch.stack(finite, -1), atol=1e-5, rtol=1e-4)


def test_mixture_gradient_of_expectation_is_unbiased() -> None:
    """∇ E[sin z₁ + z₁z₂ + z₂²] by rsample matches the closed form's gradient (4 s.e.)."""
    K = 3
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(K, generator=g, dtype=DT).requires_grad_()
    loc = torch.randn(K, 2, generator=g, dtype=DT).requires_grad_()
    log_scale = (0.3 * torch.randn(K, 2, generator=g, dtype=DT)).requires_grad_()
    params = [logits, loc, log_scale]

    pi, scale = torch.softmax(logits, -1), log_scale.exp()
    exact = (
        pi
        * (
            torch.sin(loc[:, 0]) * torch.exp(-0.5 * scale[:, 0] ** 2)
            + loc[:, 0] * loc[:, 1]
            + loc[:, 1] ** 2
            + scale[:, 1] ** 2
        )
    ).sum()
    exact_grad = torch.cat([gr.reshape(-1) for gr in torch.autograd.grad(exact, params)])

    torch.manual_seed(8)
    batches = []
    for _ in range(20):
        q = mixture_of_diagonal_gaussians(logits, loc, log_scale.exp())
        z = q.rsample((5000,))
        f = (torch.sin(z[:, 0]) + z[:, 0] * z[:, 1] + z[:, 1] ** 2).mean()
        batches.append(torch.cat([gr.reshape(-1) for gr in torch.autograd.grad(f, params)]))
    est = torch.stack(batches)
    mean, se = est.mean(0), est.std(0) / math.sqrt(est.shape[0])
    assert exact_grad[:K].abs().max() > 0.05  # the weights matter: a naive estimator fails here
    assert ((mean - exact_grad).abs() <= 4 * se + 1e-3).all(), (mean, exact_grad, se)


def test_mixture_of_one_is_the_gaussian_reparameterization() -> None:
    loc = torch.randn(4, 1, 3, dtype=DT).requires_grad_()
    scale = (torch.rand(4, 1, 3, dtype=DT) + 0.5).requires_grad_()
    q = mixture_of_diagonal_gaussians(torch.zeros(4, 1, dtype=DT), loc, scale)
    torch.manual_seed(9)
    z = q.rsample((2,))
    z.sum().backward()
    eps = (z.detach() - loc.detach()[:, 0]) / scale.detach()[:, 0]
    torch.testing.assert_close(loc.grad[:, 0], torch.full((4, 3), 2.0, dtype=DT))
    torch.testing.assert_close(scale.grad[:, 0], eps.sum(0))
    gauss = Independent(Normal(loc[:, 0], scale[:, 0]), 1)
    torch.testing.assert_close(q.log_prob(z), gauss.log_prob(z))


def test_mixture_rsample_values_are_exact_samples() -> None:
    q = family("mixture", 3, components=5)(h(4))
    assert isinstance(q, DiagonalGaussianMixture)
    torch.manual_seed(10)
    a = q.rsample((6,))
    torch.manual_seed(10)
    b = q.sample((6,))
    assert torch.equal(a.detach(), b)
    assert q.expand((2, 4)).rsample().shape == (2, 4, 3)


def test_mixture_location_and_options() -> None:
    fam = family("mixture", 3, components=5)
    hh = h(4)
    assert fam.logits.out_features == 5
    torch.testing.assert_close(fam.location(hh), fam(hh).mean)
    assert family("mixture", 3).components == 4  # the default
    for bad in (0, 2.5, False):
        with pytest.raises(VarfamError, match="components"):
            FAMILIES.build("mixture", F, 3, options={"components": bad})


# ------------------------------------------------------------------ student-t
def test_student_learned_df_has_floor_two() -> None:
    fam = family("student", 3)
    assert fam.df is None and fam.raw_df is not None
    with torch.no_grad():
        fam.raw_df.bias.fill_(-1e3)  # softplus → 0: df sits on the floor
    assert torch.allclose(fam(h(2)).base_dist.df, torch.tensor(2.0, dtype=DT))
    with torch.no_grad():
        fam.raw_df.bias.fill_(1.0)
    df = fam(h(2)).base_dist.df
    assert (df > 2).all() and torch.isfinite(fam(h(2)).mean).all()


def test_student_fixed_df_and_log_prob_formula() -> None:
    fam = family("student", 3, df=3.5)
    assert fam.raw_df is None
    assert all("df" not in n for n, _ in fam.named_parameters())
    hh = h(2)
    q = fam(hh)
    assert torch.equal(q.base_dist.df, torch.full((2, 3), 3.5, dtype=DT))
    z = q.sample((4,))
    nu, mu, s = 3.5, fam.loc(hh), torch.exp(0.5 * fam.raw_scale(hh))
    expected = (
        math.lgamma((nu + 1) / 2)
        - math.lgamma(nu / 2)
        - 0.5 * math.log(nu * math.pi)
        - torch.log(s)
        - (nu + 1) / 2 * torch.log1p(((z - mu) / s) ** 2 / nu)
    ).sum(-1)
    torch.testing.assert_close(q.log_prob(z), expected)
    for bad in (0, -2.0, "five", True):
        with pytest.raises(VarfamError, match="df"):
            FAMILIES.build("student", F, 3, options={"df": bad})


def test_student_df_gradient_is_unbiased() -> None:
    """rsample is reparameterized in df too: ∂/∂ν E|z| matches the closed form."""
    nu = torch.tensor(5.0, dtype=DT, requires_grad=True)

    def mean_abs(v: torch.Tensor) -> torch.Tensor:  # E|T| for T ~ t_v(0, 1)
        return (
            2
            * torch.sqrt(v)
            * torch.exp(torch.lgamma((v + 1) / 2) - torch.lgamma(v / 2))
            / (math.sqrt(math.pi) * (v - 1))
        )

    (exact,) = torch.autograd.grad(mean_abs(nu), nu)
    torch.manual_seed(11)
    est = torch.stack(
        [
            torch.autograd.grad(StudentT(nu, 0.0, 1.0).rsample((10_000,)).abs().mean(), nu)[0]
            for _ in range(20)
        ]
    )
    assert abs(exact) > 0.01
    assert abs(est.mean() - exact) <= 4 * est.std() / math.sqrt(20)


# ------------------------------------------------------------------ laplace
def test_laplace_kl_to_standard_normal_closed_form() -> None:
    fam = family("laplace", 3)
    hh = h(2)
    q = fam(hh)
    p = Independent(Normal(torch.zeros(3, dtype=DT), torch.ones(3, dtype=DT)), 1)
    m, b = q.base_dist.loc, q.base_dist.scale
    # KL(Laplace(m, b) || N(0, 1)) = -log(2b) - 1 + ½ log 2π + ½ (m² + 2b²), per dimension
    per_dim = -torch.log(2 * b) - 1 + 0.5 * math.log(2 * math.pi) + 0.5 * (m**2 + 2 * b**2)
    torch.testing.assert_close(kl_divergence(q, p), per_dim.sum(-1))
    torch.testing.assert_close(kl_per_dimension(q, p), per_dim)


# ------------------------------------------------------------------ in the ELBO
@pytest.mark.parametrize("name", ["full", "lowrank", "mixture", "laplace", "student"])
def test_elbo_with_family_backpropagates(name: str) -> None:
    torch.manual_seed(12)
    model = varfam.VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=3, family=name)
    x = torch.rand(6, 1, 8, 8)
    for objective in (Elbo(), Elbo(free_bits=0.2)):
        result = objective(model, x)
        assert torch.isfinite(result.loss) and result.kl.shape == (6,)
        model.zero_grad()
        result.loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.family.parameters())


def test_lowrank_stays_factorizable_for_tiny_variances() -> None:
    """A posterior scale near the floor with a large factor must not break the Cholesky."""
    fam = family("lowrank", 4, rank=2).float()
    with torch.no_grad():
        fam.log_var.bias.fill_(-23.0)  # scale ~1e-5, variance ~1e-10
        fam.cov_factor.bias.fill_(50.0)
    hh = torch.zeros(3, fam.feature_dim)
    q = fam(hh)
    z = q.rsample()
    kl = torch.distributions.kl_divergence(
        q, torch.distributions.Independent(torch.distributions.Normal(torch.zeros(4), 1.0), 1)
    )
    assert torch.isfinite(q.log_prob(z)).all() and torch.isfinite(kl).all()
