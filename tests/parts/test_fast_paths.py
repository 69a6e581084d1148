"""The training loop's fast distributions are torch's distributions: same values, same
gradients, same random stream (issue 20: the abstractions should cost nothing, and a
correct density stays correct)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from varfam.likelihoods.bernoulli import BernoulliLikelihood, IndependentBernoulli
from varfam.parts import fp32
from varfam.parts.normal import DiagonalNormal


def _pair(shape=(6, 4)):
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    log_scale = (0.3 * torch.randn(shape, generator=g, dtype=torch.float64)).requires_grad_()
    fast = DiagonalNormal(loc, log_scale)
    slow = Independent(Normal(loc, log_scale.exp()), 1)
    return loc, log_scale, fast, slow


def _grads(value: torch.Tensor, *inputs: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(value.sum(), inputs))


def test_diagonal_normal_has_torchs_density_moments_and_gradients() -> None:
    loc, log_scale, fast, slow = _pair()
    z = torch.randn(3, 6, 4, dtype=torch.float64)
    assert fast.batch_shape == slow.batch_shape and fast.event_shape == slow.event_shape
    torch.testing.assert_close(fast.log_prob(z), slow.log_prob(z))
    for a, b in zip(_grads(fast.log_prob(z), loc, log_scale),
                    _grads(slow.log_prob(z), loc, log_scale)):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(fast.entropy(), slow.entropy())
    torch.testing.assert_close(fast.mean, slow.mean)
    torch.testing.assert_close(fast.variance, slow.variance)
    expanded = fast.expand((2, 6))
    torch.testing.assert_close(expanded.log_prob(z[:2]), slow.expand((2, 6)).log_prob(z[:2]))


def test_diagonal_normal_draws_torchs_stream() -> None:
    """The same seed gives the same z as torch's Normal (runs keep their numbers)."""
    _, _, fast, slow = _pair()
    torch.manual_seed(5)
    a = fast.rsample((2,))
    torch.manual_seed(5)
    b = slow.rsample((2,))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("prior", ["standard", "diagonal", "torch"])
def test_the_closed_form_kl_is_torchs(prior: str) -> None:
    loc, log_scale, fast, slow = _pair()
    zero = torch.zeros(4, dtype=torch.float64)
    if prior == "standard":
        p = DiagonalNormal.standard_normal(zero)
    elif prior == "diagonal":
        p = DiagonalNormal(zero + 0.5, zero - 0.7)
    else:
        p = Independent(Normal(zero + 0.5, (zero - 0.7).exp()), 1)
    reference = Independent(Normal(p.base_dist.loc, p.base_dist.scale), 1)
    kl = kl_divergence(fast, p)
    torch.testing.assert_close(kl, kl_divergence(slow, reference))
    for a, b in zip(_grads(kl, loc, log_scale),
                    _grads(kl_divergence(slow, reference), loc, log_scale)):
        torch.testing.assert_close(a, b)


def test_the_standard_prior_is_n01() -> None:
    p = DiagonalNormal.standard_normal(torch.zeros(3))
    z = torch.randn(5, 3)
    reference = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    torch.testing.assert_close(p.log_prob(z), reference.log_prob(z))
    torch.testing.assert_close(p.expand((5,)).log_prob(z), reference.log_prob(z))


def test_kl_to_another_independent_prior_keeps_torchs_rule() -> None:
    """A Laplace prior is not a diagonal Gaussian: torch's Independent rule decides."""
    _, _, fast, slow = _pair()
    laplace = Independent(torch.distributions.Laplace(torch.zeros(4), torch.ones(4)), 1)
    try:
        expected = kl_divergence(slow, laplace)
    except NotImplementedError:
        with pytest.raises(NotImplementedError):
            kl_divergence(fast, laplace)
    else:
        torch.testing.assert_close(kl_divergence(fast, laplace), expected)


def test_the_bernoulli_likelihood_is_torchs_bernoulli() -> None:
    lik = BernoulliLikelihood((1, 3, 2))
    g = torch.Generator().manual_seed(1)
    params = (8 * torch.randn(5, 1, 1, 3, 2, generator=g, dtype=torch.float64)).requires_grad_()
    x = torch.rand(5, 1, 3, 2, generator=g, dtype=torch.float64)
    x[:2] = x[:2].round()  # binary and grey rows
    fast = lik(params)
    slow = Independent(Bernoulli(logits=params[:, 0], validate_args=False), 3)
    assert isinstance(fast, IndependentBernoulli)
    assert fast.batch_shape == slow.batch_shape and fast.event_shape == slow.event_shape
    torch.testing.assert_close(fast.log_prob(x), slow.log_prob(x))
    torch.testing.assert_close(_grads(fast.log_prob(x), params), _grads(slow.log_prob(x), params))
    torch.testing.assert_close(fast.mean, slow.mean)
    torch.testing.assert_close(fast.expand((5,)).log_prob(x), slow.log_prob(x))


def test_the_tiled_bernoulli_density_equals_the_copied_one() -> None:
    """k latents per image: x broadcast, never copied, gives the density of the copies."""
    lik = BernoulliLikelihood((1, 2, 2))
    logits = torch.randn(3 * 4, 1, 1, 2, 2)
    x = torch.rand(4, 1, 2, 2).round()
    px = lik(logits)
    tiled = px.log_prob_tiled(x, (3, 4))
    copied = px.log_prob(x.expand(3, *x.shape).reshape(12, 1, 2, 2)).view(3, 4)
    torch.testing.assert_close(tiled, copied)


def test_fp32_is_a_no_op_without_autocast_and_suspends_it_otherwise() -> None:
    with fp32(), fp32("cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with fp32():
            assert not torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_enabled("cpu")
