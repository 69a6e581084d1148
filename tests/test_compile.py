"""``TrainConfig.compile``: the compiled training step computes the same loss and
gradients as the eager one (fp32), compiles once per batch shape, and says what is
missing when there is no compiler.

``make test`` compiles two steps (the record's IWAE-DReG with a VampPrior, and the
ELBO's warm-up over several epochs without recompiling) and checks for graph breaks
without compiling; the tests marked slow compile the other models and modes
(``make test-all``)."""

from __future__ import annotations

import shutil

import pytest
import torch

import varfam
from varfam import VAE, VarfamError, train
from varfam.data import Dataset
from varfam.objectives import Elbo, Iwae, Objective
from varfam.training.step import loss_function

SMALL = dict(data_shape=(1, 8, 8), hidden=(32,), latent_dim=3)
CPU = torch.device("cpu")

pytestmark = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "clang++")), reason="no C++ compiler"
)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return varfam.load_dataset("digits").limit(600)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    import torch._inductor.config

    torch._dynamo.reset()
    # compiled code draws its random numbers with its own generator unless told to call
    # torch's: comparing with the eager step needs the same draws
    with torch._inductor.config.patch(fallback_random=True):
        yield
    torch._dynamo.reset()


def _gradients(model: VAE, objective: Objective, compile: str | None, epoch: float):
    loss_of = loss_function(model, objective, None, CPU, False, compile)
    torch.manual_seed(3)
    data = torch.Generator().manual_seed(4)
    x = torch.bernoulli(torch.rand(16, *SMALL["data_shape"], generator=data))
    model.zero_grad()
    loss = loss_of(x, 1.0, epoch)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _assert_compiled_step_is_eager(model: VAE, objective: Objective, mode: str) -> None:
    """The step compiled in ``mode`` has the eager step's loss and gradients (same seed)."""
    eager_loss, eager = _gradients(model, objective, None, 0.5)
    compiled_loss, compiled = _gradients(model, objective, mode, 0.5)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-4)
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "objective",
    [Iwae(k=4, estimator="dreg"),
     pytest.param(Iwae(k=4, estimator="stl"), marks=pytest.mark.slow)],
    ids=["iwae-dreg", "iwae-stl"],
)
def test_the_compiled_step_has_the_eager_loss_and_gradients(objective: Objective) -> None:
    torch.manual_seed(0)
    model = VAE.build(**SMALL, prior="vamp", prior_options={"components": 5})
    _assert_compiled_step_is_eager(model, objective, "default")


@pytest.mark.slow
def test_the_hierarchical_vae_compiles_to_the_eager_loss_and_gradients() -> None:
    torch.manual_seed(0)
    model = VAE.build(
        data_shape=(1, 8, 8), hidden=(32,), latent_dim=4, family="hierarchical",
        family_options={"hidden": 8},
        prior_options={"hidden": 8, "top_prior": "vamp", "top_prior_options": {"components": 5}},
    )
    objective = Iwae(k=4, estimator="dreg")
    _assert_compiled_step_is_eager(model, objective, "default")


@pytest.mark.slow
def test_the_autoregressive_likelihood_compiles_to_the_eager_loss_and_gradients() -> None:
    torch.manual_seed(0)
    model = VAE.build(**SMALL, prior="vamp", prior_options={"components": 5},
                      likelihood="autoregressive-bernoulli",
                      likelihood_options={"kernel": 3, "width": 4})
    with torch.no_grad():  # the context's last layer starts at zero: give every layer a gradient
        model.likelihood.context.out.weight.normal_(0.0, 0.5)
    _assert_compiled_step_is_eager(model, Iwae(k=4, estimator="dreg"), "default")


@pytest.mark.parametrize(("family", "likelihood"), [
    ("diagonal", "bernoulli"), ("realnvp", "bernoulli"), ("hierarchical", "bernoulli"),
    ("diagonal", "autoregressive-bernoulli"),
])
def test_the_bf16_dreg_step_is_one_graph(family: str, likelihood: str) -> None:
    """No graph break in the step a compiled record run takes (bf16 autocast, DReG, a
    VampPrior): a break splits the step into pieces and loses most of the speed-up."""
    prior = {"prior": "vamp", "prior_options": {"components": 5}}
    if family == "hierarchical":
        prior = {"prior_options": {"top_prior": "vamp", "top_prior_options": {"components": 5}}}
    model = VAE.build(data_shape=(1, 8, 8), hidden=(32,), latent_dim=4, family=family,
                      likelihood=likelihood, **prior)
    objective = Iwae(k=4, estimator="dreg")

    def step(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return objective(model, x).loss

    explained = torch._dynamo.explain(step)(torch.rand(16, 1, 8, 8).bernoulli())
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]


@pytest.mark.slow
def test_the_max_autotune_step_has_the_eager_loss_and_gradients() -> None:
    torch.manual_seed(0)
    model = VAE.build(**SMALL, prior="vamp", prior_options={"components": 5})
    objective = Iwae(k=4, estimator="dreg")
    _assert_compiled_step_is_eager(model, objective, "max-autotune")


def test_the_warmup_weight_follows_the_epoch_without_recompiling() -> None:
    """The compiled ELBO with warm-up: the eager loss and gradients at every epoch."""
    torch.manual_seed(0)
    model = VAE.build(**SMALL)  # the standard prior: an analytic KL > 0, so the loss rises
    objective = Elbo(warmup_epochs=1.0)
    epochs = (0.0, 0.25, 0.5, 1.0, 2.0)
    steps = [_gradients(model, objective, "default", e) for e in epochs[:2]]
    with torch._dynamo.config.patch(error_on_recompile=True):  # a new epoch: the same graph
        steps += [_gradients(model, objective, "default", e) for e in epochs[2:]]
    eager = [_gradients(model, objective, None, e) for e in epochs]
    losses = [loss for loss, _ in steps]
    torch.testing.assert_close(torch.stack(losses), torch.stack([loss for loss, _ in eager]),
                               rtol=1e-5, atol=1e-4)
    for (_, compiled), (_, reference) in zip(steps, eager):
        for a, b in zip(compiled, reference):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert losses[0] < losses[2] < losses[3]  # the KL weight rises over the warm-up
    torch.testing.assert_close(losses[3], losses[4])  # and stays at beta after it


@pytest.mark.slow
def test_compiled_training_matches_eager_training(digits: Dataset) -> None:
    options = dict(epochs=2, batch_size=120, precision="fp32", seed=5,
                   objective="iwae", objective_options={"k": 3, "estimator": "dreg"})
    torch.manual_seed(11)
    eager = train(VAE.build(**SMALL), digits, **options)
    torch.manual_seed(11)
    # 600 = 5 × 120: one batch shape, so after the first step nothing may recompile
    with torch._dynamo.config.patch(recompile_limit=1, fail_on_recompile_limit_hit=True):
        compiled = train(VAE.build(**SMALL), digits, compile=True, **options)
    for a, b in zip(compiled.history, eager.history):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["test_elbo"] == pytest.approx(b["test_elbo"], rel=1e-4)


def test_compile_without_a_compiler_says_what_to_install(
    digits: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(VarfamError, match="C\\+\\+ compiler.*without --compile"):
        train(VAE.build(**SMALL), digits, epochs=1, compile=True)


def test_an_unknown_compile_mode_is_refused() -> None:
    from varfam.config import TrainConfig

    with pytest.raises(VarfamError, match="compile_mode must be default or max-autotune"):
        TrainConfig(compile=True, compile_mode="fastest")
