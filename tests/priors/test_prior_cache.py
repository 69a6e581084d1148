"""The standard prior's distribution is built once and rebuilt whenever it would differ."""

import copy

import torch

from varfam import VAE
from varfam.objectives import kl_term
from varfam.priors import StandardNormal


def test_returned_again_and_rebuilt_on_dtype_and_copy():
    prior = StandardNormal(3, (1, 8, 8))
    p = prior()
    assert prior() is p and p.standard
    prior.double()
    p64 = prior()
    assert p64 is not p and p64.loc.dtype == torch.float64 and p64.scale.dtype == torch.float64
    twin = copy.deepcopy(prior)
    assert twin().loc is twin._zero
    prior._zero.add_(0)  # written to: rebuilt
    assert prior() is not p64


def test_inference_mode_builds_afresh_and_training_still_differentiates():
    model = VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,), family="full")
    x = torch.rand(4, 1, 8, 8)
    with torch.inference_mode():
        p_eval = model.prior_distribution()
        assert model.prior._built is None and p_eval.scale.is_inference()
    q = model.encode(x)
    kl = kl_term(q, model.prior_distribution(), q.rsample())
    kl.sum().backward()  # would fail on an inference tensor saved for backward
    assert model.family.loc.weight.grad is not None
