"""The local autoregressive Bernoulli likelihood: an exact mass, causal, sampled correctly.

- p(x|z) sums to one over every binary image of a small shape (two channels), for
  random context weights, so the masked window and the per-position factorization
  give a normalized mass;
- the context is causal: the offset at a position has zero derivative with respect
  to that position and every later one (raster order, all channels), and a
  non-zero one with respect to earlier positions inside the window;
- the whole-image convolution and the per-position network of the ancestral pass
  give the same offsets at every position;
- ancestral samples follow the exact masses, and ``.mean`` (the probabilities met
  along one ancestral pass) averages to the exact mean;
- ``log_prob_tiled`` (the context once per image) equals ``log_prob`` on the tiled
  images, and ``VAE.log_likelihood`` takes that path;
- a new likelihood is the plain Bernoulli (the context's last layer starts at zero);
- with ``start`` the training step leaves the context out (no gradient, the plain
  Bernoulli's loss) until the schedule's progress reaches it, and the trainer switches
  it on part-way, compiled or not;
- options and data shapes it cannot serve are one-line user errors;
- a model with it trains with IWAE (its bound rises) and its importance-sampled
  log-likelihood lies above its ELBO; the README's CLI command trains, draws its
  pictures, evaluates and reports.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

import varfam
from varfam.errors import VarfamError
from varfam.evaluation.bounds import importance_sampling
from varfam.likelihoods.autoregressive import (
    AutoregressiveBernoulliLikelihood,
    LocalAutoregressiveBernoulli,
    LocalContext,
)
from varfam.registry import LIKELIHOODS

DT = torch.float64


def random_likelihood(shape: tuple[int, ...], seed: int = 0,
                      **options) -> AutoregressiveBernoulliLikelihood:
    """A likelihood whose context weights (including the zero-initialised last layer) are random."""
    torch.manual_seed(seed)
    lik = AutoregressiveBernoulliLikelihood(shape, **options).double()
    with torch.no_grad():
        for p in lik.parameters():
            p.normal_(0.0, 0.7)
    return lik


def every_binary_image(shape: tuple[int, ...]) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= s
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=DT).view(-1, *shape)


def exact_masses(px: LocalAutoregressiveBernoulli, images: torch.Tensor) -> torch.Tensor:
    """log p(x|z) for every image and every row of ``px``: shape (len(images), N)."""
    n = px.batch_shape[0]
    return torch.stack([px.log_prob(img.expand(n, *img.shape)) for img in images])


@pytest.mark.parametrize(("shape", "kernel", "width"), [((2, 2, 3), 3, 3), ((1, 3, 4), 5, 2),
                                                      ((2, 3, 2), 3, 0)])
def test_the_mass_sums_to_one_over_every_image(shape: tuple[int, ...], kernel: int,
                                               width: int) -> None:
    lik = random_likelihood(shape, kernel=kernel, width=width, depth=2)
    params = torch.randn(4, 1, *shape, dtype=DT) * 2
    log_mass = exact_masses(lik(params), every_binary_image(shape))  # (2^n, 4)
    torch.testing.assert_close(log_mass.logsumexp(0), torch.zeros(4, dtype=DT))


@pytest.mark.parametrize("width", [4, 0])
def test_the_context_reads_only_earlier_positions(width: int) -> None:
    c, h, w = 2, 5, 6
    lik = random_likelihood((c, h, w), kernel=5, width=width, depth=1)
    x = torch.rand(1, c, h, w, dtype=DT)
    jac = torch.autograd.functional.jacobian(lambda v: lik.context(v), x)
    jac = jac.reshape(c, h * w, c, h * w).abs().sum((0, 2))  # (output position, input position)
    later_or_same = torch.ones(h * w, h * w).triu().bool()
    assert jac[later_or_same].max() == 0
    # inside the 5×5 window every earlier position is read: the row above, and the left
    i = 2 * w + 3
    for j in (i - 1, i - 2, i - w, i - w - 2, i - w + 2, i - 2 * w):
        assert jac[i, j] > 0, j
    assert jac[i, i - 3] == 0  # three to the left lies outside the window


@pytest.mark.parametrize(("kernel", "width", "depth"), [(5, 4, 1), (3, 0, 0), (7, 3, 0)])
def test_the_whole_image_convolution_equals_the_per_position_network(kernel: int, width: int,
                                                                     depth: int) -> None:
    # forward runs the first layer as a masked convolution; the ancestral pass applies
    # the same weights to one position's window at a time: they must agree everywhere,
    # edges included
    c, h, w = 2, 5, 6
    lik = random_likelihood((c, h, w), kernel=kernel, width=width, depth=depth)
    x = torch.bernoulli(torch.full((3, c, h, w), 0.5, dtype=DT))
    padded = lik.context.pad(x)
    per_position = torch.stack([torch.stack([lik.context.at(padded, row, col)
                                             for col in range(w)], -1) for row in range(h)], -2)
    torch.testing.assert_close(lik.context(x), per_position)


def test_ancestral_samples_follow_the_masses_and_the_mean_is_unbiased() -> None:
    shape = (1, 2, 2)
    lik = random_likelihood(shape, seed=1, kernel=3, width=3)
    params = torch.randn(2, 1, *shape, dtype=DT)
    px = lik(params)
    images = every_binary_image(shape)
    probs = exact_masses(px, images).exp()  # (16, 2)
    torch.manual_seed(2)
    assert px.sample((3,)).shape == (3, 2, *shape)
    # 20,000 independent draws in one ancestral pass: params repeated 20,000 times
    many = params.repeat(20_000, *[1] * (params.dim() - 1))
    draws = lik(many).sample().view(20_000, 2, *shape)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    codes = (draws.flatten(2) * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=DT)).sum(-1).long()
    freq = torch.stack([torch.bincount(codes[:, i], minlength=16) for i in range(2)], 1) / 20_000
    assert (freq - probs).abs().sum(0).max() < 0.03  # total variation
    exact_mean = (probs[:, :, None, None, None] * images[:, None]).sum(0)
    # 4,000 independent estimates of the mean in one pass
    means = lik(many[: 2 * 4000]).mean.view(4000, 2, *shape).mean(0)
    torch.testing.assert_close(means, exact_mean, atol=0.02, rtol=0)


def test_tiled_log_prob_equals_the_plain_one_and_the_model_uses_it() -> None:
    shape = (1, 4, 4)
    lik = random_likelihood(shape, kernel=3, width=3)
    x = torch.bernoulli(torch.full((3, *shape), 0.4, dtype=DT))
    params = torch.randn(5 * 3, 1, *shape, dtype=DT)
    px = lik(params)
    tiled = px.log_prob_tiled(x, (5, 3))
    plain = px.log_prob(x.expand(5, *x.shape).reshape(15, *shape)).view(5, 3)
    torch.testing.assert_close(tiled, plain)

    model = varfam.VAE.build(data_shape=shape, hidden=(8,), latent_dim=2,
                             likelihood="autoregressive-bernoulli",
                             likelihood_options={"kernel": 3, "width": 3}).double()
    model.likelihood.load_state_dict(lik.state_dict())
    z = torch.randn(5, 3, 2, dtype=DT)
    via_model = model.log_likelihood(x, z)
    by_hand = torch.stack([model.decode(z[i]).log_prob(x) for i in range(5)])
    torch.testing.assert_close(via_model, by_hand)


def test_a_new_likelihood_is_the_plain_bernoulli() -> None:
    shape = (1, 5, 5)
    ar = LIKELIHOODS.build("autoregressive-bernoulli", shape).double()
    plain = LIKELIHOODS.build("bernoulli", shape).double()
    params = torch.randn(4, 1, *shape, dtype=DT)
    x = torch.bernoulli(torch.full((4, *shape), 0.5, dtype=DT))
    torch.testing.assert_close(ar(params).log_prob(x), plain(params).log_prob(x))


def test_a_late_context_is_left_out_until_its_start() -> None:
    shape = (1, 5, 5)
    lik = random_likelihood(shape, kernel=3, width=2, start=0.5)
    plain = LIKELIHOODS.build("bernoulli", shape).double()
    params = torch.randn(4, 1, *shape, dtype=DT, requires_grad=True)
    x = torch.bernoulli(torch.full((4, *shape), 0.5, dtype=DT))
    assert lik.set_progress(0.2) is True and not lik.context.active  # switched off
    lik(params).log_prob(x).sum().backward()
    assert all(p.grad is None for p in lik.parameters())
    torch.testing.assert_close(lik(params).log_prob(x), plain(params).log_prob(x))
    assert lik.set_progress(0.5) is True and lik.context.active  # switched on
    assert lik.set_progress(0.9) is False
    lik(params).log_prob(x).sum().backward()
    assert all(p.grad is not None for p in lik.parameters())


@pytest.mark.parametrize(("epochs", "compile"), [
    (1, False), (2, False), pytest.param(2, True, marks=pytest.mark.slow),
])
def test_the_trainer_switches_the_context_on_part_way(epochs: int, compile: bool) -> None:
    """start = 0.5: a 1-epoch run never trains the context (its last layer stays exactly
    zero); a 2-epoch run, eager or compiled (slow tier), trains it in the second epoch."""
    torch.manual_seed(0)
    data = varfam.load_dataset("digits").limit(256)
    model = varfam.VAE.build(data_shape=data.data_shape, hidden=(16,), latent_dim=2,
                             likelihood="autoregressive-bernoulli",
                             likelihood_options={"kernel": 3, "width": 4, "start": 0.5})
    result = varfam.train(model, data, epochs=epochs, batch_size=64, binarize="dynamic",
                          compile=compile, precision="fp32")
    out = result.model.likelihood.context.out.weight
    assert (out.abs().sum() > 0) == (epochs == 2)
    assert result.model.likelihood.context.active == (epochs == 2)


def test_the_moving_average_leaves_out_a_late_context_too(monkeypatch) -> None:
    """With ``ema`` the evaluated weights are the average's copy of the model: it too is
    told the schedule's progress, so a 1-epoch run with start = 0.5 never runs the
    context, neither to train nor to score the validation and test images."""
    calls: list[bool] = []
    forward = LocalContext.forward
    monkeypatch.setattr(LocalContext, "forward",
                        lambda self, x: calls.append(self.active) or forward(self, x))
    torch.manual_seed(0)
    data = varfam.load_dataset("digits").limit(256)
    model = varfam.VAE.build(data_shape=data.data_shape, hidden=(16,), latent_dim=2,
                             likelihood="autoregressive-bernoulli",
                             likelihood_options={"kernel": 3, "width": 4, "start": 0.5})
    result = varfam.train(model, data, epochs=1, batch_size=64, binarize="dynamic",
                          precision="fp32", ema=0.9, validation=64)
    assert "validation_elbo" in result.history[-1]
    assert calls == []


@pytest.mark.parametrize(("shape", "options", "fragment"), [
    ((784,), {}, "needs image data"),
    ((1, 4, 4), {"kernel": 4}, "odd size of at least 3"),
    ((1, 4, 4), {"kernel": 1}, "odd size of at least 3"),
    ((1, 4, 4), {"width": -1}, "width must be a whole number"),
    ((1, 4, 4), {"kernel": "7"}, "odd size of at least 3"),
    ((1, 4, 4), {"depth": -1}, "depth must be a whole number"),
    ((1, 4, 4), {"start": 1.0}, "start must be a fraction in \\[0, 1\\)"),
    ((1, 4, 4), {"start": "0.5"}, "start must be a fraction"),
    ((1, 4, 4), {"window": 3}, "its options: kernel, width, depth, start"),
])
def test_bad_options_and_shapes_are_user_errors(shape, options, fragment) -> None:
    with pytest.raises(VarfamError, match=fragment) as err:
        LIKELIHOODS.build("autoregressive-bernoulli", shape, options=options)
    assert "\n" not in str(err.value)


@pytest.mark.slow  # kept out of make test's 4-minute budget
def test_a_model_learns_and_its_likelihood_bound_is_above_its_elbo() -> None:
    torch.manual_seed(0)
    shape = (1, 8, 8)
    # stripes: each row repeats its first pixel, which a causal window predicts well
    rows = torch.bernoulli(torch.full((256, 1, 8, 1), 0.5))
    data = rows.expand(256, 1, 8, 8).contiguous()
    model = varfam.VAE.build(data_shape=shape, hidden=(32,), latent_dim=2,
                             likelihood="autoregressive-bernoulli",
                             likelihood_options={"kernel": 3, "width": 8})
    objective = varfam.registry.OBJECTIVES.build("iwae", options={"k": 4})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def bound() -> float:
        with torch.no_grad():
            return -float(objective(model, data).loss)

    before = bound()
    for _ in range(150):
        opt.zero_grad()
        objective(model, data).loss.backward()
        opt.step()
    after = bound()
    assert after > before + 5  # nats per image
    res = importance_sampling(model, data[:32], k=64, seed=0)
    assert (res.log_likelihood >= res.elbo - 1e-6).all()
    assert float(res.log_likelihood.mean()) > -8 * 8 * 0.7 * 0.5  # coins cost 0.69 per pixel


def test_the_cli_trains_and_evaluates_with_a_late_context(tmp_path: Path, capsys) -> None:
    """The README's command on digits: the options from the command line, the context
    switched on in the second epoch, the pictures (ancestral sampling), the report, and an
    importance-sampled log-likelihood above the ELBO."""
    from varfam.cli import main

    out = tmp_path / "ar"
    argv = ["train", "--data", "digits", "--limit", "300", "--epochs", "2", "--hidden", "32",
            "--latent-dim", "4", "--binarize", "dynamic",
            "--likelihood", "autoregressive-bernoulli", "--likelihood-option", "start=0.5",
            "--likelihood-option", "kernel=3", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    model = json.loads((out / "config.json").read_text())["model"]
    assert model["likelihood"] == "autoregressive-bernoulli"
    assert model["likelihood_options"] == {"start": 0.5, "kernel": 3}
    for picture in ("samples.png", "reconstructions.png", "latent.png", "interpolation.png"):
        assert (out / picture).is_file(), picture
    trained = varfam.load(out)
    assert trained.likelihood.context.out.weight.abs().sum() > 0
    capsys.readouterr()
    assert main(["eval", str(out), "--iw", "50", "--limit", "100", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["log_likelihood"] > result["elbo"]
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file()


def test_importance_sampling_reads_each_image_once(monkeypatch) -> None:
    """K = 30 samples, one decoder call per sample: the context still runs once per block
    of images, and the numbers equal those of recomputing it for every sample."""
    torch.manual_seed(0)
    model = varfam.VAE.build(data_shape=(1, 6, 6), hidden=(16,), latent_dim=2,
                             likelihood="autoregressive-bernoulli",
                             likelihood_options={"kernel": 3, "width": 4})
    with torch.no_grad():
        model.likelihood.context.out.weight.normal_(0.0, 0.5)
    x = torch.bernoulli(torch.full((10, 1, 6, 6), 0.4))
    calls = []
    forward = type(model.likelihood.context).forward
    monkeypatch.setattr(type(model.likelihood.context), "forward",
                        lambda self, v: calls.append(len(v)) or forward(self, v))
    once = importance_sampling(model, x, k=30, batch_size=4, k_chunk=1, seed=1)
    assert calls == [4, 4, 2]
    monkeypatch.setattr(model, "observe", lambda v: None)
    every = importance_sampling(model, x, k=30, batch_size=4, k_chunk=1, seed=1)
    assert len(calls) == 3 + 30 * 3
    torch.testing.assert_close(once.log_likelihood, every.log_likelihood)
    torch.testing.assert_close(once.elbo, every.elbo)
