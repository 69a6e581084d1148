"""Conditioning on labels composes with every family, likelihood, prior, objective and
architecture: each combination trains one epoch in process on 96 tiny labelled images
(3 classes), with every label known (a conditional VAE) or all but 12 hidden
(semi-supervised M2, y summed out exactly); every logged number is finite, and the
family's parameters and, for M2, the classifier's move.

Per family two combinations that together take every value of every factor once:
{its own prior, M2, Bernoulli, ELBO} and {the conditional prior (own on the sphere),
every label, Gaussian, IWAE with DReG}. Then every image likelihood, every
architecture (mlp, gated-mlp, conv) in both modes, and the VampPrior and the
hierarchical prior with a VampPrior on top.
"""

from __future__ import annotations

import math

import pytest
import torch

import varfam
from varfam.data import Dataset
from varfam.registry import FAMILIES

FAMILY_OPTIONS = {"gumbel": {"categories": 2}}
OBJECTIVES = {"elbo": {}, "iwae": {"k": 3, "estimator": "dreg"}}
#: Likelihoods of images (the mixed likelihood is for tables).
LIKELIHOODS = ["bernoulli", "continuous-bernoulli", "gaussian", "laplace",
               "discretized-logistic", "categorical", "autoregressive-bernoulli"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """96 8×8 images on the 8-bit grid with labels 0, 1, 2."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (96, 1, 8, 8), generator=g).float() / 255
    y = torch.arange(96) % 3
    return Dataset("tiny", x[:64], x[64:], y[:64], y[64:], ("a", "b", "c"))


def _trains(data: Dataset, *, hidden_labels: bool, family: str = "diagonal",
            prior: str | None = None, likelihood: str = "bernoulli", objective: str = "elbo",
            arch: str = "mlp", **model) -> None:
    torch.manual_seed(0)
    if hidden_labels:  # keep 12 of the 64 training labels, 4 per class
        from varfam.data.labels import with_hidden_labels

        data = with_hidden_labels(data, 12, seed=0, n_classes=3)
    net = varfam.VAE.build(
        data_shape=(1, 8, 8), hidden=(16,), latent_dim=4, arch=arch, family=family,
        family_options=FAMILY_OPTIONS.get(family, {}), prior=prior, likelihood=likelihood,
        condition="label", n_classes=3, classes=("a", "b", "c"), classifier=hidden_labels,
        **model,
    )
    parts = [net.family, *([net.condition.classifier] if hidden_labels else [])]
    before = [[p.detach().clone() for p in part.parameters()] for part in parts]
    result = varfam.train(net, data, epochs=1, batch_size=32, objective=objective,
                          objective_options=OBJECTIVES[objective])
    (record,) = result.history
    for key in ("train_loss", "test_elbo", "test_reconstruction", "test_kl"):
        assert math.isfinite(record[key]), (key, record[key])
    assert ("test_accuracy" in record) == hidden_labels
    assert all(torch.isfinite(p).all() for p in net.parameters())
    for part, old in zip(parts, before):
        moved = [not torch.equal(a, b) for a, b in zip(old, part.parameters())]
        assert moved and any(moved), f"{type(part).__name__} did not move"
    with torch.no_grad():  # a class-conditional draw of every class
        assert torch.isfinite(net.eval().sample(3, [0, 1, 2])).all()


@pytest.mark.parametrize("family", FAMILIES.names())
def test_every_family_semi_supervised(tiny: Dataset, family: str) -> None:
    _trains(tiny, hidden_labels=True, family=family)


@pytest.mark.parametrize("family", FAMILIES.names())
def test_every_family_conditional(tiny: Dataset, family: str) -> None:
    real = getattr(FAMILIES.get(family), "latent_support", "real") == "real"
    _trains(tiny, hidden_labels=False, family=family, prior="conditional" if real else None,
            likelihood="gaussian", objective="iwae")


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_every_likelihood(tiny: Dataset, likelihood: str) -> None:
    _trains(tiny, hidden_labels=likelihood.endswith("bernoulli"), likelihood=likelihood)


@pytest.mark.parametrize("hidden_labels", [False, True])
@pytest.mark.parametrize("arch", ["mlp", "gated-mlp", "conv"])
def test_every_architecture(tiny: Dataset, arch: str, hidden_labels: bool) -> None:
    _trains(tiny, hidden_labels=hidden_labels, arch=arch)


@pytest.mark.parametrize("hidden_labels", [False, True])
def test_priors_defined_through_the_encoder(tiny: Dataset, hidden_labels: bool) -> None:
    _trains(tiny, hidden_labels=hidden_labels, prior="vamp",
            prior_options={"components": 6}, objective="iwae")
    _trains(tiny, hidden_labels=hidden_labels, family="hierarchical", prior="hierarchical",
            prior_options={"top_prior": "vamp", "top_prior_options": {"components": 6}})
