"""Objectives tested where the answer is known: a linear-Gaussian model with exact log p(x).

The model (float64): p(z) = N(0, I_2), p(x|z) = N(Wz + b, σ²I_4), built as a varfam VAE
from an identity encoder, a linear decoder, the ``gaussian`` likelihood with fixed σ
and a ``diagonal`` family (W has orthogonal columns, so the true posterior is
diagonal) or a ``full`` family (any W). Then log p(x) = log N(x; b, WWᵀ + σ²I), the
posterior is N(Σ Wᵀ(x - b)/σ², Σ) with Σ = (I + WᵀW/σ²)⁻¹, and the ELBO of any
Gaussian q has a closed form. Checked:

- the ``elbo`` objective's mean equals the exact ELBO, which is ≤ log p(x) with the
  gap KL(q || posterior), and equals log p(x) at the true posterior;
- at the true posterior every log-weight equals log p(x) (zero variance);
- the IWAE bound rises with k (1 < 5 < 50) and stays below log p(x);
- the STL and DReG encoder gradients have the mean of the plain estimator (within
  standard errors; STL at k = 1, DReG at k = 1 and 5) and a lower variance; STL at
  k = 5 does not (its bias, Tucker et al. 2018); both are exactly zero at the true
  posterior; the decoder and a learned prior receive exactly the plain IWAE gradient;
- β, warm-up and free bits follow the documented loss; :func:`kl_term` picks the
  closed form where registered and Monte Carlo otherwise;
- every built-in prior × {bernoulli, gaussian} × {elbo, iwae-dreg} trains, and every
  registered family works with the STL and DReG estimators.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import Tensor
from torch.distributions import Distribution, MultivariateNormal, kl_divergence

import varfam
from _linear_gaussian import Identity, LinearDecoder
from varfam.errors import VarfamError
from varfam.model import VAE
from varfam.objectives import Elbo, Iwae, kl_per_dimension, kl_term
from varfam.registry import FAMILIES, LIKELIHOODS, OBJECTIVES, PRIORS

DT = torch.float64
SIGMA = 0.7
# orthogonal columns: WᵀW = diag(2.5, 5.625), so the true posterior is diagonal
W_DIAG = torch.tensor([[1.0, 0.75], [1.0, -0.75], [0.5, 1.5], [-0.5, 1.5]], dtype=DT)
W_FULL = torch.tensor([[1.0, 0.3], [0.2, -0.8], [0.5, 1.5], [-0.9, 0.4]], dtype=DT)
B_VEC = torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=DT)
X = torch.tensor([[0.5, -1.0, 1.2, 0.4], [-0.3, 0.8, -0.6, 1.1]], dtype=DT)


class VAE64(VAE):
    """The VAE without the fp32 casts of ``encode``/``decode``: the test runs in float64."""

    def encode(self, x: Tensor, y: Tensor | None = None) -> Distribution:
        return self.family(self.encoder(x))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        return self.likelihood(self.decoder(z))


def posterior(w: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(A, c, Σ): the posterior mean is A x + c, its covariance Σ."""
    d = w.shape[1]
    cov = torch.linalg.inv(torch.eye(d, dtype=DT) + w.T @ w / SIGMA**2)
    a = cov @ w.T / SIGMA**2
    return a, -a @ B_VEC, cov


def log_px(w: Tensor, x: Tensor) -> Tensor:
    cov = w @ w.T + SIGMA**2 * torch.eye(w.shape[0], dtype=DT)
    return MultivariateNormal(B_VEC, cov).log_prob(x)


def linear_gaussian(family: str = "diagonal", prior: str = "standard",
                    shift: tuple[float, float] = (0.0, 0.0),
                    widen: tuple[float, float] = (0.0, 0.0)) -> VAE64:
    """The model with q set to the true posterior, its mean shifted and log-variance widened."""
    w = W_DIAG if family == "diagonal" else W_FULL
    torch.manual_seed(0)
    fam = FAMILIES.build(family, 4, 2).to(DT)
    a, c, cov = posterior(w, X)
    chol = torch.linalg.cholesky(cov)
    with torch.no_grad():
        for p in fam.parameters():
            p.zero_()
        fam.loc.weight.copy_(a)
        fam.loc.bias.copy_(c + torch.tensor(shift, dtype=DT))
        fam.log_var.bias.copy_(2 * torch.log(chol.diagonal()) + torch.tensor(widen, dtype=DT))
        if family == "full":
            fam.tril.bias.copy_(chol[1, 0].view(1))
    lik = LIKELIHOODS.build("gaussian", (4,), options={"variance": "fixed", "sigma": SIGMA})
    pri = PRIORS.build(prior, 2, (4,)).to(DT)
    return VAE64(Identity(4), fam, LinearDecoder(w, B_VEC), lik, pri)


def exact_elbo(model: VAE64, x: Tensor) -> Tensor:
    """E_q[log p(x|z)] - KL(q || N(0, I)) in closed form, per example."""
    q = model.encode(x)
    m, s = q.mean, q.covariance_matrix if hasattr(q, "covariance_matrix") else None
    if s is None:
        s = torch.diag_embed(q.base_dist.scale**2)
    w, b = model.decoder.linear.weight, model.decoder.linear.bias
    resid = x - m @ w.T - b
    trace = torch.einsum("ij,bjk,ik->b", w, s, w)
    n = x.shape[-1]
    recon = -0.5 * n * math.log(2 * math.pi * SIGMA**2)
    recon = recon - ((resid**2).sum(-1) + trace) / (2 * SIGMA**2)
    prior = MultivariateNormal(torch.zeros(2, dtype=DT), torch.eye(2, dtype=DT))
    return recon - kl_divergence(MultivariateNormal(m, s), prior)


def repeat(x: Tensor, n: int) -> Tensor:
    return x.repeat(n, 1)


def mean_se(v: Tensor) -> tuple[Tensor, Tensor]:
    return v.mean(0), v.std(0) / math.sqrt(v.shape[0])


# ------------------------------------------------------------------ bounds
@pytest.mark.parametrize("family", ["diagonal", "full"])
def test_true_posterior_makes_every_log_weight_exact(family: str) -> None:
    model = linear_gaussian(family)
    exact = log_px(W_DIAG if family == "diagonal" else W_FULL, X)
    with torch.no_grad():
        log_w, *_ = Iwae(k=50).log_weights(model, X)
        torch.testing.assert_close(log_w, exact.expand(50, 2), rtol=0, atol=1e-10)
        torch.testing.assert_close(exact_elbo(model, X), exact, rtol=0, atol=1e-10)
        result = Iwae(k=3)(model, X)
        torch.testing.assert_close(result.elbo, exact, rtol=0, atol=1e-10)


@pytest.mark.parametrize("family", ["diagonal", "full"])
@pytest.mark.parametrize(("shift", "widen"), [((0.0, 0.0), (0.0, 0.0)),
                                              ((0.4, -0.3), (0.6, -0.4)),
                                              ((-1.0, 0.5), (-1.0, 1.0))])
def test_elbo_is_exact_in_mean_and_below_log_px(family: str, shift, widen) -> None:
    model = linear_gaussian(family, shift=shift, widen=widen)
    w = W_DIAG if family == "diagonal" else W_FULL
    exact, bound = log_px(w, X), exact_elbo(model, X)
    # the gap is exactly KL(q || true posterior)
    a, c, cov = posterior(w, X)
    q = model.encode(X)
    true_post = MultivariateNormal(X @ a.T + c, cov)
    q_mvn = MultivariateNormal(q.mean, torch.diag_embed(q.variance)) if family == "diagonal" \
        else q
    with torch.no_grad():
        torch.testing.assert_close(exact - bound, kl_divergence(q_mvn, true_post))
        assert (bound <= exact + 1e-12).all()
        torch.manual_seed(1)
        n = 4000
        res = Elbo()(model, repeat(X, n))
        est, se = mean_se(res.elbo.view(n, 2))
    assert ((est - bound).abs() <= 4 * se + 1e-12).all(), (est, bound, se)
    torch.testing.assert_close(res.loss, -res.elbo.mean())


def test_iwae_bound_rises_with_k() -> None:
    model = linear_gaussian(shift=(0.6, -0.5), widen=(0.8, -0.6))
    exact = log_px(W_DIAG, X)
    torch.manual_seed(2)
    means, ses = [], []
    with torch.no_grad():
        for k in (1, 5, 50):
            n = 2000
            bound = Iwae(k=k)(model, repeat(X, n)).elbo.view(n, 2)
            m, s = mean_se(bound)
            means.append(m)
            ses.append(s)
    for lo, hi, s_lo, s_hi in zip(means[:-1], means[1:], ses[:-1], ses[1:]):
        assert (hi - lo > 4 * (s_lo**2 + s_hi**2).sqrt()).all(), (means, ses)
    assert (means[-1] <= exact + 3 * ses[-1]).all()
    assert ((means[0] - exact_elbo(model, X)).abs() <= 4 * ses[0]).all()  # k = 1 is the ELBO


# ------------------------------------------------------------------ gradient estimators
def family_grads(model: VAE64, objective, x: Tensor, reps: int, seed: int) -> Tensor:
    """(reps, n_params): gradients of the loss w.r.t. the family's parameters, one per draw."""
    torch.manual_seed(seed)
    out = []
    for _ in range(reps):
        model.zero_grad()
        objective(model, x).loss.backward()
        out.append(torch.cat([p.grad.flatten() for p in model.family.parameters()]))
    return torch.stack(out)


@functools.cache
def perturbed_grads(k: int, estimator: str) -> tuple[Tensor, Tensor, Tensor]:
    """(mean, standard error, variance) of the family gradient over 200 draws, q ≠ posterior.

    Each draw is the gradient of a batch of 64 examples (the two rows of ``X``
    repeated), i.e. the mean of 64 independent single-example estimates.
    """
    model = linear_gaussian(shift=(0.4, -0.3), widen=(0.6, -0.4))
    g = family_grads(model, Iwae(k=k, estimator=estimator), repeat(X, 32), 200,
                     seed=3 if estimator == "plain" else 4)
    return g.mean(0), g.std(0) / math.sqrt(g.shape[0]), g.var(0)


def z_scores(k: int, estimator: str) -> Tensor:
    m, se, _ = perturbed_grads(k, estimator)
    m0, se0, _ = perturbed_grads(k, "plain")
    return (m - m0).abs() / (se**2 + se0**2).sqrt().clamp_min(1e-12)


@pytest.mark.parametrize(("k", "estimator"), [(1, "stl"), (1, "dreg"), (5, "dreg")])
def test_stl_and_dreg_are_unbiased(k: int, estimator: str) -> None:
    m0, se0, var0 = perturbed_grads(k, "plain")
    assert (m0.abs() > 4 * se0).sum() >= 10  # the gradient is clearly non-zero
    z = z_scores(k, estimator)
    assert (z < 4.5).all(), (estimator, k, z.max())
    # the point of the estimators: a lower variance than the plain one
    assert perturbed_grads(k, estimator)[2].sum() < 0.5 * var0.sum()


def test_stl_is_biased_for_several_samples() -> None:
    """Tucker et al. 2018: STL applied to IWAE (k > 1) has a different mean; DReG fixes it."""
    assert z_scores(5, "stl").max() > 10


@pytest.mark.parametrize(("k", "estimator"), [(1, "stl"), (5, "stl"), (5, "dreg"), (20, "dreg")])
def test_zero_variance_at_the_true_posterior(k: int, estimator: str) -> None:
    model = linear_gaussian("full")
    grads = family_grads(model, Iwae(k=k, estimator=estimator), X, 10, seed=5)
    assert grads.abs().max() < 1e-10
    plain = family_grads(model, Iwae(k=k), X, 10, seed=5)
    assert plain.abs().max() > 1e-3


@pytest.mark.parametrize("estimator", ["stl", "dreg"])
def test_generative_model_gets_the_plain_iwae_gradient(estimator: str) -> None:
    """Decoder and a learned prior: same draws → exactly the plain estimator's gradient."""
    def generative_grads(est: str) -> Tensor:
        model = linear_gaussian(prior="learned", shift=(0.3, 0.2), widen=(0.5, -0.5))
        with torch.no_grad():
            model.prior.loc.copy_(torch.tensor([0.2, -0.1]))
        torch.manual_seed(6)
        Iwae(k=7, estimator=est)(model, X).loss.backward()
        params = [*model.decoder.parameters(), *model.prior.parameters()]
        return torch.cat([p.grad.flatten() for p in params])

    plain = generative_grads("plain")
    assert plain.abs().min() > 0
    torch.testing.assert_close(generative_grads(estimator), plain, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ beta, warm-up, free bits
def test_kl_weight_schedule() -> None:
    obj = Elbo(beta=2.0, warmup_epochs=4)
    assert [obj.kl_weight(e) for e in (0, 1, 2, 4, 10)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    assert Elbo(beta=0.5).kl_weight(0) == 0.5


@pytest.mark.parametrize(("beta", "warmup", "epoch"), [(1.0, 0, 0), (4.0, 0, 3), (2.0, 4, 1.0)])
def test_loss_weights_the_kl_and_reports_the_plain_elbo(beta, warmup, epoch) -> None:
    model = linear_gaussian(shift=(0.2, 0.1))
    torch.manual_seed(7)
    obj = Elbo(beta=beta, warmup_epochs=warmup)
    res = obj(model, X, epoch=epoch)
    weight = obj.kl_weight(epoch)
    torch.testing.assert_close(res.loss, -(res.reconstruction - weight * res.kl).mean())
    torch.testing.assert_close(res.elbo, res.reconstruction - res.kl)
    torch.testing.assert_close(res.kl, kl_divergence(model.encode(X), model.prior_distribution()))


def test_free_bits_floor_the_kl_of_each_dimension() -> None:
    """Dimension 0 sits below the floor (no KL gradient), dimension 1 above it."""
    model = linear_gaussian(shift=(0.0, 2.0))
    with torch.no_grad():
        model.family.loc.weight.zero_()
        model.family.loc.bias.copy_(torch.tensor([0.05, 2.0]))
        model.family.log_var.bias.copy_(torch.tensor([0.0, -1.0]))
        model.decoder.linear.weight.zero_()  # the reconstruction ignores z
    floor = 0.5
    torch.manual_seed(8)
    res = Elbo(free_bits=floor)(model, X)
    per_dim = kl_per_dimension(model.encode(X), model.prior_distribution()).mean(0)
    assert per_dim[0] < floor < per_dim[1]
    expected = -(res.reconstruction.mean() - per_dim.clamp_min(floor).sum())
    torch.testing.assert_close(res.loss, expected)
    res.loss.backward()
    assert model.family.loc.bias.grad[0] == 0 and model.family.log_var.bias.grad[0] == 0
    assert model.family.loc.bias.grad[1] != 0 and model.family.log_var.bias.grad[1] != 0
    torch.testing.assert_close(res.elbo, res.reconstruction - res.kl)  # reported: plain ELBO


def test_free_bits_without_a_per_dimension_kl_floor_the_total() -> None:
    torch.manual_seed(9)
    model = varfam.VAE.build(data_shape=(1, 4, 4), hidden=(8,), latent_dim=3, family="mixture")
    x = torch.rand(5, 1, 4, 4)
    res = Elbo(free_bits=100.0)(model, x)  # far above the KL: the KL term is a constant
    torch.testing.assert_close(res.loss, -(res.reconstruction.mean() - 300.0))


@pytest.mark.parametrize(("options", "fragment"), [
    ({"beta": -1.0}, "beta must be a non-negative number"),
    ({"free_bits": "x"}, "free_bits must be a non-negative number"),
])
def test_bad_elbo_options(options: dict, fragment: str) -> None:
    with pytest.raises(VarfamError, match=fragment):
        OBJECTIVES.build("elbo", options=options)


@pytest.mark.parametrize(("options", "fragment"), [
    ({"k": 0}, "k must be a positive integer"),
    ({"k": 2.0}, "k must be a positive integer"),
    ({"estimator": "rws"}, "estimator must be one of plain, stl, dreg"),
])
def test_bad_iwae_options(options: dict, fragment: str) -> None:
    with pytest.raises(VarfamError, match=fragment) as err:
        OBJECTIVES.build("iwae", options=options)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ kl_term
def test_kl_term_closed_form_or_monte_carlo() -> None:
    model = linear_gaussian(shift=(0.3, 0.0))
    q, p = model.encode(X), model.prior_distribution()
    z = q.rsample((4,))
    torch.testing.assert_close(kl_term(q, p, z), kl_divergence(q, p).expand(4, 2))
    mog = PRIORS.build("mog", 2, (4,), options={"components": 3}).to(DT)()
    torch.testing.assert_close(kl_term(q, mog, z), q.log_prob(z) - mog.log_prob(z))
    given = torch.zeros(4, 2, dtype=DT)
    torch.testing.assert_close(kl_term(q, mog, z, log_q=given, log_p=given), given)


# ------------------------------------------------------------------ everything trains
@pytest.mark.parametrize("prior", ["standard", "learned", "mog", "vamp", "flow"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize(("objective", "options"), [("elbo", {}),
                                                    ("iwae", {"estimator": "dreg"})])
def test_every_prior_trains(prior: str, likelihood: str, objective: str, options: dict) -> None:
    torch.manual_seed(10)
    model = varfam.VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=2, prior=prior,
                             prior_options={"components": 5} if prior == "vamp" else {},
                             likelihood=likelihood)
    obj = OBJECTIVES.build(objective, options=options)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(16, 1, 8, 8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(2):
        res = obj(model, x, epoch=0.5)
        assert torch.isfinite(res.loss) and torch.isfinite(res.elbo).all()
        assert res.elbo.shape == res.kl.shape == res.reconstruction.shape == (16,)
        opt.zero_grad()
        res.loss.backward()
        opt.step()
    for n, p in model.named_parameters():
        assert torch.isfinite(p).all(), n
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("prior.") for n in moved) or not list(model.prior.parameters())
    assert any(n.startswith("family.") for n in moved)


@pytest.mark.parametrize("family", FAMILIES.names())
@pytest.mark.parametrize("estimator", ["stl", "dreg"])
def test_every_family_works_with_stl_and_dreg(family: str, estimator: str) -> None:
    """The stop-gradient q is rebuilt through torch.func for any family."""
    cls = FAMILIES.get(family)
    prior = cls.default_prior if cls.default_prior in PRIORS else "standard"
    torch.manual_seed(11)
    model = varfam.VAE.build(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, family=family,
                             family_options=dict(getattr(cls, "contract_options", {})),
                             prior=prior)
    x = torch.rand(4, 1, 4, 4)
    torch.manual_seed(12)
    plain = Iwae(k=3)(model, x)
    torch.manual_seed(12)
    res = Iwae(k=3, estimator=estimator)(model, x)
    torch.testing.assert_close(res.loss, plain.loss)  # same draws: the same bound
    res.loss.backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
