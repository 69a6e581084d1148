"""Priors p(z): the contract, normalization, sampling vs density, and the VampPrior's mixture.

Each built-in prior (``standard``, ``learned``, ``mog``, ``vamp``, ``flow``, and
``hierarchical`` with a VampPrior on top), with its parameters moved away from their
initial values, is checked in float64 for: shapes of ``log_prob``/``sample`` (batch (),
event (D,)); gradients reaching every parameter; the density integrating to one on a
2-D grid (latent_dim = 2); and Monte Carlo moments of ``sample`` agreeing with the
moments of ``log_prob`` computed by quadrature (so ``sample`` draws from the density
``log_prob`` states).
The VampPrior is also checked against the explicit ``logsumexp_k log q(z|u_k) -
log K``, its samples against its components (far from N(0, I)), and gradients
reaching the pseudo-inputs. Save/load through safetensors keeps every prior.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import varfam
from _quadrature import grid, moments, sample_box, weights
from varfam.errors import VarfamError
from varfam.families import DiagonalGaussian
from varfam.priors import Prior, VampPrior
from varfam.registry import PRIORS
from varfam.runs.checkpoint import load_model, save_model

DT = torch.float64
MINE = ["standard", "learned", "mog", "vamp", "flow", "hierarchical"]
DATA_SHAPE = (1, 3, 3)
SMALL = {"vamp": {"components": 4}, "mog": {"components": 3},
         "flow": {"flow_steps": 2, "hidden": 16},
         # two layers of one dimension each, a VampPrior on the top one
         "hierarchical": {"hidden": 8, "top_prior": "vamp", "top_prior_options": {"components": 3}}}


class TinyEncoder(nn.Module):
    """x (N, 1, 3, 3) → q(z|x), a diagonal Gaussian in latent_dim dimensions (float64)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Linear(9, 6)
        self.family = DiagonalGaussian(6, latent_dim)

    def forward(self, x: torch.Tensor):
        return self.family(torch.tanh(self.net(x.flatten(1))))


def build(name: str, latent_dim: int = 2, seed: int = 0) -> tuple[Prior, TinyEncoder]:
    """The prior (float64) with parameters moved off their start, and an encoder for it."""
    torch.manual_seed(seed)
    prior = PRIORS.build(name, latent_dim, DATA_SHAPE, options=SMALL.get(name, {})).double()
    encoder = TinyEncoder(latent_dim).double()
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
        # spread the VampPrior's components: larger encoder weights, smaller scales
        encoder.family.loc.weight.mul_(8.0)
        encoder.family.log_var.bias.fill_(-1.0)
    return prior, encoder


def test_registry_has_priors() -> None:
    assert set(MINE) <= set(PRIORS.names())
    for name in MINE:
        entry = PRIORS.entry(name)
        assert entry.description and entry.reference, name


# ------------------------------------------------------------------ contract
@pytest.mark.parametrize("name", MINE)
@pytest.mark.parametrize("lead", [(5,), (3, 4)])
def test_shapes(name: str, lead: tuple[int, ...]) -> None:
    prior, encoder = build(name, latent_dim=3)
    p = prior(encoder)
    assert p.batch_shape == () and p.event_shape == (3,)
    lp = p.log_prob(torch.randn(*lead, 3, dtype=DT))
    assert lp.shape == lead and lp.dtype == DT and torch.isfinite(lp).all()
    assert p.sample(lead).shape == (*lead, 3)


@pytest.mark.parametrize("name", MINE)
def test_gradients_reach_every_parameter(name: str) -> None:
    prior, encoder = build(name, latent_dim=3)
    z = torch.randn(7, 3, dtype=DT, requires_grad=True)
    prior(encoder).log_prob(z).sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    for pname, param in prior.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, pname
    if name in ("vamp", "hierarchical"):  # a prior defined through the encoder trains it too
        assert encoder.family.loc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MINE)
def test_density_integrates_to_one_and_matches_samples(name: str) -> None:
    prior, encoder = build(name, latent_dim=2)
    torch.manual_seed(11)
    with torch.no_grad():
        p = prior(encoder)
        z = p.sample((200_000,))
    pts, log_w = grid(sample_box(z, 401))
    w = weights(p.log_prob, pts, log_w)
    total = float(w.sum())
    assert abs(total - 1.0) < 5e-3, f"{name}: density integrates to {total}"
    # moments of log_prob (quadrature) vs moments of sample (Monte Carlo, 200k draws)
    mean_q, cov_q = moments(w, pts)
    mean_mc, cov_mc = z.mean(0), torch.cov(z.T)
    se = (cov_mc.diagonal() / z.shape[0]).sqrt()
    assert ((mean_q - mean_mc).abs() < 5 * se + 1e-3).all(), (name, mean_q, mean_mc)
    torch.testing.assert_close(cov_q, cov_mc, rtol=0.03, atol=0.03 * float(cov_mc.diagonal().max()))


# ------------------------------------------------------------------ VampPrior
def test_vamp_log_prob_is_the_explicit_mixture() -> None:
    prior, encoder = build("vamp", latent_dim=3)
    z = torch.randn(2, 5, 3, dtype=DT)
    u = prior.pseudo_inputs()
    assert u.shape == (4, *DATA_SHAPE) and u.min() > 0 and u.max() < 1
    per_k = torch.stack([encoder(u[k : k + 1]).log_prob(z.unsqueeze(-2)).squeeze(-1)
                         for k in range(4)])  # (K, 2, 5)
    explicit = torch.logsumexp(per_k, 0) - math.log(4)
    torch.testing.assert_close(prior(encoder).log_prob(z), explicit)


def test_vamp_samples_come_from_its_components() -> None:
    """Components placed around (6, -4): samples follow them, not N(0, I)."""
    prior, encoder = build("vamp", latent_dim=2)
    with torch.no_grad():
        encoder.family.loc.bias.copy_(torch.tensor([6.0, -4.0]))
    torch.manual_seed(3)
    p = prior(encoder)
    z = p.sample((50_000,))
    q = encoder(prior.pseudo_inputs())
    torch.testing.assert_close(z.mean(0), q.mean.mean(0), atol=0.03, rtol=0)
    assert z.mean(0)[0] > 3 and z.mean(0)[1] < -2
    # each sample is likely under some component: far above what N(0, I) draws would give
    assert p.log_prob(z).min() > -30
    # components are drawn uniformly: under p = 1/K Σ_k q_k the mean responsibility
    # E_p[q_k(z) / (K p(z))] of every component is exactly 1/K
    resp = torch.softmax(q.log_prob(z.unsqueeze(-2)), -1).mean(0)
    torch.testing.assert_close(resp, torch.full((4,), 0.25, dtype=DT), atol=0.01, rtol=0)


def test_vamp_gradients_reach_pseudo_inputs_through_a_vae() -> None:
    torch.manual_seed(0)
    model = varfam.VAE.build(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, prior="vamp",
                             prior_options={"components": 6})
    model.prior_distribution().log_prob(torch.randn(5, 2)).sum().backward()
    assert model.prior.raw.grad is not None and model.prior.raw.grad.abs().sum() > 0


def test_vamp_initialize_from_data_and_real_support() -> None:
    prior = VampPrior(2, (1, 2, 2), components=5)
    x = torch.rand(3, 1, 2, 2) * 0.9 + 0.05
    prior.initialize_from(x, generator=torch.Generator().manual_seed(0))
    u = prior.pseudo_inputs()
    assert all(any(torch.allclose(uk, xi, atol=1e-5) for xi in x) for uk in u)
    real = VampPrior(2, (1, 2, 2), components=2, pseudo_inputs="real")
    real.initialize_from(torch.full((4, 1, 2, 2), -3.0))
    assert torch.equal(real.pseudo_inputs(), torch.full((2, 1, 2, 2), -3.0))
    with pytest.raises(VarfamError, match="cannot initialize"):
        prior.initialize_from(torch.rand(3, 4))


def test_vamp_needs_the_encoder() -> None:
    with pytest.raises(ValueError, match="defined through the encoder"):
        VampPrior(2, (1, 2, 2), components=2)()


# ------------------------------------------------------------------ options, save/load
@pytest.mark.parametrize(("name", "options", "fragment"), [
    ("mog", {"components": 0}, "components must be a positive integer"),
    ("vamp", {"components": 2.5}, "components must be a positive integer"),
    ("vamp", {"pseudo_inputs": "image"}, "pseudo_inputs must be one of unit, real"),
    ("flow", {"flow_steps": 0}, "flow_steps must be a positive integer"),
    ("learned", {"components": 3}, "takes no option 'components'"),
])
def test_bad_options_are_user_errors(name: str, options: dict, fragment: str) -> None:
    with pytest.raises(VarfamError, match=fragment) as err:
        PRIORS.build(name, 2, DATA_SHAPE, options=options)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", MINE)
def test_save_load_keeps_log_prob(name: str, tmp_path) -> None:
    torch.manual_seed(4)
    model = varfam.VAE.build(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, prior=name,
                             prior_options=SMALL.get(name, {}))
    with torch.no_grad():
        for p in model.prior.parameters():
            p.add_(0.2 * torch.randn_like(p))
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    z = torch.randn(6, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.prior_distribution().log_prob(z),
                                   model.prior_distribution().log_prob(z), rtol=0, atol=0)
