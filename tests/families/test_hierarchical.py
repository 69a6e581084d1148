"""The hierarchical (two-layer) family and prior: the factorization, sampling, composition.

The registry-wide contracts already run on both (tests/test_family_contract.py:
normalization, gradients, stop-gradient scoring, save/load; tests/test_priors.py with a
VampPrior on top: normalization, sample moments against the density, gradients to the
pseudo-inputs). Here: ``log_prob`` is exactly the product of its two Gaussian factors,
ancestral samples follow the density, a VampPrior on top is the mixture over the
family's top layer, the two parts agree on the split, bad options are clear errors,
every shipped config builds, and an IWAE-trained hierarchical VAE learns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Independent, Normal

import varfam
from _quadrature import grid, moments, sample_box, weights
from varfam.config import RunConfig, load_toml
from varfam.errors import VarfamError
from varfam.families.hierarchical import HierarchicalGaussian, TwoLevelGaussian
from varfam.objectives import Iwae
from varfam.registry import FAMILIES, PRIORS

DT = torch.float64
# every run config shipped (a tuning space, configs/*-space.toml, is not one)
CONFIGS = sorted(p for p in (Path(__file__).parents[2] / "configs").glob("*.toml")
                 if not p.stem.endswith("-space"))


def _family(top: int = 2, latent: int = 5, features: int = 6) -> HierarchicalGaussian:
    torch.manual_seed(0)
    fam = HierarchicalGaussian(features, latent, top=top, hidden=[7, 5]).double()
    with torch.no_grad():  # a conditional that really depends on z_top
        for p in fam.conditional.parameters():
            p.mul_(3.0)
    return fam


def test_log_prob_is_the_product_of_the_two_gaussian_factors() -> None:
    fam = _family()
    h = torch.randn(4, 6, dtype=DT)
    q = fam(h)
    z = q.rsample((3,))
    z_top, z_bottom = z[..., :2], z[..., 2:]
    top = Normal(fam.loc(h), torch.exp(0.5 * fam.log_var(h)))
    loc, scale = fam.conditional(z_top, fam.conditional.context(h))
    explicit = top.log_prob(z_top).sum(-1) + Normal(loc, scale).log_prob(z_bottom).sum(-1)
    torch.testing.assert_close(q.log_prob(z), explicit)
    assert q.batch_shape == (4,) and q.event_shape == (5,)
    # the bottom layer's conditional really varies with z_top (else this is a diagonal)
    assert (loc[0] - loc[1]).abs().max() > 1e-2


def test_ancestral_samples_follow_the_density() -> None:
    """2-D (1 + 1): quadrature moments of exp(log_prob) against 200k samples."""
    fam = _family(top=1, latent=2)
    h = torch.full((1, 6), 0.3, dtype=DT)
    torch.manual_seed(3)
    with torch.no_grad():
        q = fam(h)
        z = q.sample((200_000,))[:, 0]
    pts, log_w = grid(sample_box(z, 600))
    dens = weights(lambda p: q.log_prob(p[:, None, :])[:, 0], pts, log_w)
    assert abs(float(dens.sum()) - 1.0) < 2e-3
    mean_q, cov_q = moments(dens, pts)
    se = (z.var(0) / z.shape[0]).sqrt()
    assert ((mean_q - z.mean(0)).abs() < 5 * se).all()
    torch.testing.assert_close(cov_q, torch.cov(z.T), rtol=0.03, atol=1e-3)


def test_location_is_each_layer_mean_given_the_layer_above() -> None:
    fam = _family()
    h = torch.randn(3, 6, dtype=DT)
    top = fam.loc(h)
    bottom, _ = fam.conditional(top, fam.conditional.context(h))
    torch.testing.assert_close(fam.location(h), torch.cat([top, bottom], -1))


def test_vamp_on_top_is_the_mixture_over_the_family_top_layer() -> None:
    torch.manual_seed(1)
    model = varfam.VAE.build(
        data_shape=(1, 4, 4), hidden=(8,), latent_dim=5, family="hierarchical",
        family_options={"top": 3, "hidden": 6},
        prior_options={"hidden": 6, "top_prior": "vamp", "top_prior_options": {"components": 4}},
    ).double()
    assert model.config.prior == "hierarchical" and model.config.prior_options["top"] == 3
    p = model.prior_distribution()
    z = torch.randn(7, 5, dtype=DT)
    with torch.no_grad():
        u = model.prior.top_prior.pseudo_inputs()
        top_q = model.encode(u).top  # q(z_top | u_k), batch (4,)
        log_top = torch.logsumexp(top_q.log_prob(z[:, None, :3]), -1) - math.log(4)
        loc, scale = model.prior.conditional(z[:, :3])
        explicit = log_top + Normal(loc, scale).log_prob(z[:, 3:]).sum(-1)
        torch.testing.assert_close(p.log_prob(z), explicit)
    assert model.sample(6).shape == (6, 1, 4, 4)


def test_vamp_on_top_of_a_diagonal_family_uses_its_first_coordinates() -> None:
    torch.manual_seed(2)
    model = varfam.VAE.build(
        data_shape=(1, 4, 4), hidden=(8,), latent_dim=4, prior="hierarchical",
        prior_options={"top": 1, "hidden": 5, "top_prior": "vamp",
                       "top_prior_options": {"components": 3}},
    ).double()
    z = torch.randn(6, 4, dtype=DT)
    with torch.no_grad():
        q = model.encode(model.prior.top_prior.pseudo_inputs())
        top = Independent(Normal(q.base_dist.loc[:, :1], q.base_dist.scale[:, :1]), 1)
        log_top = torch.logsumexp(top.log_prob(z[:, None, :1]), -1) - math.log(3)
        loc, scale = model.prior.conditional(z[:, :1])
        explicit = log_top + Normal(loc, scale).log_prob(z[:, 1:]).sum(-1)
        torch.testing.assert_close(model.prior_distribution().log_prob(z), explicit)


def test_a_prior_and_family_that_split_differently_are_refused() -> None:
    model = varfam.VAE.build(
        data_shape=(1, 4, 4), hidden=(8,), latent_dim=6, family="hierarchical",
        family_options={"top": 2}, prior="hierarchical",
        prior_options={"top": 3, "top_prior": "vamp", "top_prior_options": {"components": 2}},
    )
    with pytest.raises(VarfamError, match="top layer has 3 dimensions but the family's has 2"):
        model.prior_distribution()


def test_a_vamp_top_needs_a_known_top_marginal() -> None:
    model = varfam.VAE.build(
        data_shape=(1, 4, 4), hidden=(8,), latent_dim=4, family="full", prior="hierarchical",
        prior_options={"top_prior": "vamp", "top_prior_options": {"components": 2}},
    )
    with pytest.raises(VarfamError, match="not known for MultivariateNormal"):
        model.prior_distribution()


@pytest.mark.parametrize(("kind", "options", "fragment"), [
    ("family", {"top": 0}, "top must be an integer from 1 to latent_dim - 1 = 3"),
    ("family", {"top": 4}, "top must be an integer from 1 to latent_dim - 1 = 3"),
    ("family", {"hidden": [8, 0]}, "hidden must be a positive integer or a list"),
    ("prior", {"hidden": "wide"}, "hidden must be a positive integer or a list"),
    ("prior", {"top_prior": "hierarchical"}, "top_prior cannot be hierarchical"),
    ("prior", {"top_prior": "vamp", "top_prior_options": 3}, "must be a table of options"),
    ("prior", {"top_prior": "vamp", "top_prior_options": {"parts": 3}}, "no option 'parts'"),
    ("prior", {"top_prior": "nope"}, "nope"),
])
def test_bad_options_are_user_errors(kind: str, options: dict, fragment: str) -> None:
    with pytest.raises(VarfamError, match=fragment) as err:
        if kind == "family":
            FAMILIES.build("hierarchical", 6, 4, options=options)
        else:
            PRIORS.build("hierarchical", 4, (1, 4, 4), options=options)
    assert "\n" not in str(err.value)


def test_one_dimension_has_no_second_layer() -> None:
    with pytest.raises(VarfamError, match="both layers need a dimension"):
        FAMILIES.build("hierarchical", 6, 1)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_builds_its_model(path: Path) -> None:
    cfg = RunConfig.from_dict(load_toml(path), str(path))
    model = varfam.VAE.build(cfg.model)
    with torch.no_grad():
        z = model.prior_distribution().sample((2,))
        assert z.shape == (2, cfg.model.latent_dim)
        assert torch.isfinite(model.prior_distribution().log_prob(z)).all()


def test_an_iwae_dreg_trained_hierarchical_vae_learns() -> None:
    """200 Adam steps on 64 fixed 4×4 binary patterns: the 5-sample bound rises by >3 nats
    and every parameter (both layers, the conditional nets, the pseudo-inputs) moves."""
    torch.manual_seed(0)
    patterns = (torch.rand(8, 1, 4, 4) < 0.5).float()
    x = patterns.repeat(8, 1, 1, 1)
    model = varfam.VAE.build(
        data_shape=(1, 4, 4), arch="gated-mlp", hidden=(32,), latent_dim=4,
        family="hierarchical", family_options={"hidden": 16},
        prior_options={"hidden": 16, "top_prior": "vamp", "top_prior_options": {"components": 4}},
    )
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    objective = Iwae(k=5, estimator="dreg")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def bound() -> float:
        torch.manual_seed(5)
        with torch.no_grad():
            return float(objective(model, x).elbo.mean())

    before = bound()
    for _ in range(200):
        opt.zero_grad()
        objective(model, x).loss.backward()
        opt.step()
    assert bound() > before + 3.0
    still = [n for n, p in model.named_parameters() if torch.equal(p, start[n])]
    assert not still, still
    assert isinstance(model.encode(x[:2]), TwoLevelGaussian)


def test_the_cli_trains_and_evaluates_a_hierarchical_vae(tmp_path: Path, capsys) -> None:
    """The README's command on digits: the family's natural prior with a VampPrior on top,
    the pictures, and an importance-sampled log-likelihood above the ELBO."""
    from varfam.cli import main

    out = tmp_path / "hvae"
    argv = ["train", "--data", "digits", "--limit", "300", "--epochs", "2", "--hidden", "32",
            "--family", "hierarchical", "--latent-dim", "4", "--prior-option", "top_prior=vamp",
            "--prior-option", 'top_prior_options={"components": 5}', "--objective", "iwae",
            "--estimator", "dreg", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    model = json.loads((out / "config.json").read_text())["model"]
    assert model["prior"] == "hierarchical"
    assert model["prior_options"] == {"top": 2, "top_prior": "vamp",
                                      "top_prior_options": {"components": 5}}
    for picture in ("samples.png", "reconstructions.png", "latent.png", "interpolation.png"):
        assert (out / picture).is_file(), picture
    capsys.readouterr()
    assert main(["eval", str(out), "--iw", "50", "--limit", "100", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["log_likelihood"] > result["elbo"]
