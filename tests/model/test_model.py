"""The VAE object: the textbook architecture, the maps, save and load."""

from __future__ import annotations

import torch
from torch.distributions import Distribution

import varfam
from varfam import VAE


def test_default_is_the_textbook_model() -> None:
    model = VAE.build()
    cfg = model.config
    assert (cfg.family, cfg.prior, cfg.likelihood, cfg.arch) == (
        "diagonal", "standard", "bernoulli", "mlp"
    )
    assert cfg.data_shape == (1, 28, 28) and cfg.hidden == (400,) and cfg.latent_dim == 20
    # the classic example's layers: fc1 784-400, fc21/fc22 400-20, fc3 20-400, fc4 400-784
    expected = (784 * 400 + 400) + 2 * (400 * 20 + 20) + (20 * 400 + 400) + (400 * 784 + 784)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_encode_decode_sample_reconstruct_shapes() -> None:
    model = VAE.build(data_shape=(1, 8, 8), hidden=(32,), latent_dim=3)
    x = torch.rand(5, 1, 8, 8)
    q = model.encode(x)
    assert isinstance(q, Distribution)
    assert q.batch_shape == (5,) and q.event_shape == (3,)
    z = q.rsample()
    px = model.decode(z)
    assert px.log_prob(x).shape == (5,)
    assert model.sample(7).shape == (7, 1, 8, 8)
    assert model.reconstruct(x).shape == (5, 1, 8, 8)
    rec = model.reconstruct(x, draws=4)
    assert rec.shape == (4, 5, 1, 8, 8)
    # different draws of z give different reconstructions of the same input
    assert not torch.allclose(rec[0], rec[1])
    # log_likelihood decodes (k, B, D) at once and agrees with decode().log_prob
    zs = q.sample((3,))
    ll = model.log_likelihood(x, zs)
    assert ll.shape == (3, 5)
    torch.testing.assert_close(ll[1], model.decode(zs[1]).log_prob(x))


def test_prior_sample_and_images_in_unit_interval() -> None:
    model = VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=2)
    s = model.sample(10)
    assert float(s.min()) >= 0 and float(s.max()) <= 1


def test_save_load_gives_identical_log_prob(tmp_path) -> None:
    model = VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=2)
    x = torch.rand(4, 1, 8, 8)
    varfam.save(model, tmp_path)
    loaded = varfam.load(tmp_path)
    z = torch.randn(4, 2)
    torch.testing.assert_close(
        loaded.decode(z).log_prob(x), model.decode(z).log_prob(x), rtol=0, atol=0
    )
    torch.testing.assert_close(loaded.encode(x).log_prob(z), model.encode(x).log_prob(z))


def test_conv_architecture_on_rgb_and_odd_sizes() -> None:
    for shape in [(3, 16, 16), (3, 13, 10), (1, 28, 28)]:
        model = VAE.build(data_shape=shape, arch="conv", hidden=(32,), latent_dim=4)
        x = torch.rand(2, *shape)
        assert model.decode(model.encode(x).rsample()).log_prob(x).shape == (2,)
        assert model.sample(3).shape == (3, *shape)


def test_training_beats_untrained_and_fixed_baselines() -> None:
    from varfam.data import binarize_fixed

    data = varfam.load_dataset("digits")
    torch.manual_seed(0)
    model = VAE.build(data_shape=data.data_shape, hidden=(64,), latent_dim=4)
    test = binarize_fixed(data.test, 1)  # how train() binarizes the test set (seed + 1)
    before = varfam.evaluate_elbo(model, test)["elbo"]
    result = varfam.train(model, data, epochs=12, seed=0, lr=3e-3, binarize="static")
    after = result.history[-1]["test_elbo"]
    assert abs(after - varfam.evaluate_elbo(model, test)["elbo"]) < 1.0
    assert after > before + 5  # nats per example
    # better than the best model with no latent at all: independent pixels at the train means
    p = binarize_fixed(data.train, 0).mean(0).clamp(1e-3, 1 - 1e-3)
    baseline = torch.distributions.Bernoulli(probs=p).log_prob(test).flatten(1).sum(1).mean()
    assert after > float(baseline) + 1.0


def test_unset_prior_is_the_familys_natural_prior() -> None:
    assert VAE.build(data_shape=(1, 8, 8), hidden=(8,), latent_dim=3).config.prior == "standard"
    sphere = VAE.build(data_shape=(1, 8, 8), hidden=(8,), latent_dim=3, family="vmf")
    assert sphere.config.prior == "uniform-sphere"
    relaxed = VAE.build(data_shape=(1, 8, 8), hidden=(8,), latent_dim=4, family="gumbel",
                        family_options={"categories": 2})
    assert relaxed.config.prior == "categorical"
    assert relaxed.config.prior_options["categories"] == 2  # recorded in config.json
    # an explicit prior is kept
    mixed = VAE.build(data_shape=(1, 8, 8), hidden=(8,), latent_dim=3, family="vmf",
                      prior="standard")
    assert mixed.config.prior == "standard"
