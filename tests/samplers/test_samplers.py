"""Samplers: each round-trips through its files, and the fitted densities are right."""

from __future__ import annotations

import json
import math

import pytest
import torch

import varfam.model  # noqa: F401  (imports the parts first, as `import varfam` users do)
from varfam.errors import VarfamError
from varfam.model import VAE
from varfam.samplers import (
    SAMPLERS,
    FlowSampler,
    GaussianMixtureSampler,
    TwoStageSampler,
    fitted_sampler,
    load_sampler,
    sampler_paths,
)

#: Small settings, so every sampler fits in about a second.
QUICK = {"gmm": {"components": 2}, "flow": {"transforms": 2, "hidden": 16, "epochs": 3},
         "two-stage": {"hidden": 16, "epochs": 3}, "prior": {}}


@pytest.fixture(scope="module")
def model() -> VAE:
    torch.manual_seed(0)
    return VAE.build(data_shape=(1, 8, 8), latent_dim=3, hidden=(16,)).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def test_registry_lists_every_sampler() -> None:
    assert SAMPLERS.names() == ["prior", "gmm", "flow", "two-stage"]
    assert all(entry.reference for entry in SAMPLERS)


@pytest.mark.parametrize("name", ["prior", "gmm", "flow", "two-stage"])
def test_round_trip_through_the_run_folder(tmp_path, model, x, name: str) -> None:
    fitted = fitted_sampler(tmp_path, model, name, x, options=QUICK[name])
    assert fitted.loaded is False
    loaded = fitted_sampler(tmp_path, model, name, x, options=QUICK[name])
    torch.manual_seed(7)
    first = fitted.sample(6)
    torch.manual_seed(7)
    again = loaded.sample(6)
    assert first.shape == (6, 3)
    assert torch.equal(first, again)
    assert loaded.describe() == fitted.describe()
    if name == "prior":  # nothing to fit, nothing written
        assert not (tmp_path / "samplers").exists()
        return
    assert loaded.loaded is True
    tensors, config = sampler_paths(tmp_path, name)
    assert tensors.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    saved = json.loads(config.read_text())
    assert saved["sampler"] == name and saved["latent_dim"] == 3
    assert saved["options"] == fitted.options()
    for key, value in fitted.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_fit_leaves_the_callers_random_state_alone(model, x) -> None:
    torch.manual_seed(3)
    GaussianMixtureSampler(components=2).fit(model, x)
    after = torch.rand(3)
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(3))


def test_model_sample_decodes_the_samplers_latents(model, x) -> None:
    gmm = GaussianMixtureSampler(components=2).fit(model, x)
    torch.manual_seed(2)
    images = model.sample(5, sampler=gmm)
    torch.manual_seed(2)
    assert torch.allclose(images, model.decode(gmm.sample(5)).mean)
    torch.manual_seed(2)
    prior = model.sample(5, sampler="prior")
    torch.manual_seed(2)
    assert torch.equal(prior, model.sample(5))


def test_a_gmm_recovers_a_known_mixture() -> None:
    weights = torch.tensor([0.5, 0.3, 0.2])
    means = torch.tensor([[-6.0, 0.0], [0.0, 6.0], [6.0, -2.0]])
    scale_tril = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.7, 0.0], [0.0, 1.2]],
                               [[0.5, 0.0], [-0.4, 0.8]]])
    truth = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(weights),
        torch.distributions.MultivariateNormal(means, scale_tril=scale_tril))
    z = truth.sample((4000,))
    gmm = GaussianMixtureSampler(grid=(1, 2, 3, 4, 6))
    gmm.fit_latents(z)
    assert gmm.info["components"] == 3 and gmm.info["chosen_by"] == "bic"
    assert gmm.describe() == "gmm: 3 components (BIC over 1, 2, 3, 4, 6)"
    order = gmm.loc[:, 0].argsort()  # components come back in any order
    assert torch.allclose(gmm.loc[order], means, atol=0.1)
    assert torch.allclose(gmm.weights[order], weights, atol=0.03)
    covariances = scale_tril @ scale_tril.mT
    fitted = gmm.scale_tril[order] @ gmm.scale_tril[order].mT
    assert torch.allclose(fitted, covariances, atol=0.12)
    # its density is the fitted mixture's: log p of the true means is close to the truth's
    assert torch.allclose(gmm.distribution().log_prob(means), truth.log_prob(means), atol=0.1)


def _correlated_gaussian(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    loc = torch.tensor([2.0, -1.0])
    scale_tril = torch.tensor([[1.5, 0.0], [1.2, 0.4]])
    z = torch.distributions.MultivariateNormal(loc, scale_tril=scale_tril).sample((n,))
    return z, loc, scale_tril @ scale_tril.T


def test_a_flow_learns_a_gaussians_entropy_and_moments() -> None:
    z, loc, covariance = _correlated_gaussian(3000)
    flow = FlowSampler(transforms=2, hidden=32, epochs=15, lr=3e-3)
    flow.fit_latents(z)
    entropy = 0.5 * math.log(torch.det(2 * math.pi * math.e * covariance).item())
    # the held-out NLL is in nats of z itself: the standardization's Jacobian is counted
    assert abs(flow.info["held_out_nll"] - entropy) < 0.1
    assert abs(-flow.log_prob(z).mean().item() - entropy) < 0.1
    draws = flow.sample(4000)
    assert torch.allclose(draws.mean(0), loc, atol=0.1)
    assert torch.allclose(draws.T.cov(), covariance, atol=0.2)


def test_a_second_stage_vae_matches_a_gaussians_moments() -> None:
    z, loc, covariance = _correlated_gaussian(2000)
    two = TwoStageSampler(hidden=32, epochs=30, lr=1e-2)
    two.fit_latents(z)
    standardized = (z - z.mean(0)) / z.std(0)
    entropy = 0.5 * math.log(torch.det(2 * math.pi * math.e * standardized.T.cov()).item())
    assert two.info["held_out_loss"] > entropy - 0.1  # -ELBO bounds the NLL from above
    assert two.info["held_out_loss"] < entropy + 0.3
    assert two.info["gamma"] < 0.2  # the learned variance shrinks from the start's 1
    draws = two.sample(4000)
    assert torch.allclose(draws.mean(0), loc, atol=0.1)
    assert torch.allclose(draws.T.cov(), covariance, rtol=0.15)


def test_fit_on_draws_and_a_model_with_labels(x) -> None:
    model = VAE.build(data_shape=(1, 8, 8), latent_dim=3, hidden=(16,), condition="label",
                      n_classes=3).eval()
    y = torch.arange(len(x)) % 3
    gmm = GaussianMixtureSampler(components=2, fit_on="draw").fit(model, x, y)
    assert model.sample(4, y=1, sampler=gmm).shape == (4, 1, 8, 8)
    assert model.sample(4, sampler=gmm).shape == (4, 1, 8, 8)
    prior = fitted_sampler("unused", model, "prior")
    assert prior.sample(4, torch.tensor([0, 1, 2, 0])).shape == (4, 3)


# ---------------------------------------------------------------- what a user can get wrong
def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_an_unknown_sampler_is_one_line(tmp_path, model, x) -> None:
    with pytest.raises(VarfamError) as error:
        fitted_sampler(tmp_path, model, "gmn", x)
    assert "did you mean 'gmm'" in _one_line(error)


def test_zero_samples_is_one_line(model, x) -> None:
    gmm = GaussianMixtureSampler(components=1).fit(model, x)
    for n in (0, -3, 2.5):
        with pytest.raises(VarfamError) as error:
            gmm.sample(n)
        assert "positive integer" in _one_line(error)
    with pytest.raises(VarfamError):
        GaussianMixtureSampler().sample(3)  # not fitted


@pytest.mark.parametrize("family", ["vmf", "powerspherical", "bernoulli"])
def test_a_family_off_r_d_is_refused_in_one_line(tmp_path, x, family: str) -> None:
    model = VAE.build(data_shape=(1, 8, 8), latent_dim=3, hidden=(16,), family=family)
    with pytest.raises(VarfamError) as error:
        fitted_sampler(tmp_path, model, "gmm", x)
    assert f"family '{family}'" in _one_line(error) and "--sampler prior" in str(error.value)
    assert fitted_sampler(tmp_path, model, "prior").sample(2).shape[0] == 2


def test_a_corrupt_sampler_file_is_one_line(tmp_path, model, x) -> None:
    fitted_sampler(tmp_path, model, "gmm", x, options={"components": 2})
    tensors, config = sampler_paths(tmp_path, "gmm")
    good = tensors.read_bytes()
    tensors.write_bytes(good[:-7] + b"garbage")
    with pytest.raises(VarfamError) as error:
        fitted_sampler(tmp_path, model, "gmm", x)
    assert "refit" in _one_line(error)
    tensors.write_bytes(b"not a safetensors file")
    with pytest.raises(VarfamError) as error:
        load_sampler(tensors.with_suffix(""), model)
    _one_line(error)
    config.write_text("{ truncated")
    with pytest.raises(VarfamError) as error:
        fitted_sampler(tmp_path, model, "gmm", x)
    assert "gmm.json" in _one_line(error)
    assert fitted_sampler(tmp_path, model, "gmm", x, refit=True).loaded is False


def test_a_sampler_of_other_weights_or_options_is_refused(tmp_path, model, x) -> None:
    fitted_sampler(tmp_path, model, "gmm", x, options={"components": 2})
    with pytest.raises(VarfamError) as error:
        fitted_sampler(tmp_path, model, "gmm", x, options={"components": 3})
    assert "components" in _one_line(error)
    torch.manual_seed(99)  # other weights than the fixture's
    retrained = VAE.build(data_shape=(1, 8, 8), latent_dim=3, hidden=(16,))
    with pytest.raises(VarfamError) as error:
        fitted_sampler(tmp_path, retrained, "gmm", x)
    assert "other weights" in _one_line(error)


def test_bad_options_and_unfitted_names_are_one_line(model) -> None:
    for name, options in (("gmm", {"components": 0}), ("flow", {"epochs": 0}),
                          ("gmm", {"colour": 1}), ("two-stage", {"fit_on": "median"})):
        with pytest.raises(VarfamError) as error:
            SAMPLERS.build(name, options=options)
        _one_line(error)
    with pytest.raises(VarfamError) as error:
        model.sample(3, sampler="gmm")
    assert "fitted_sampler" in _one_line(error)
