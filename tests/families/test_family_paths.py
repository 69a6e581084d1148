"""The faster paths of the slow families compute what the direct formulas compute (issue 20):
the vMF normalizer and its closed-form derivatives, Sylvester steps without per-example
matrices, the mixture's implicit gradient by one triangular solve, and the flows'
networks in bf16 under bf16 training."""

from __future__ import annotations

import math

import pytest
import torch

from varfam.families._sphere_math import bessel_ratio, log_bessel_iv, sample_vmf_w, vmf_normalizer
from varfam.families.flows_sylvester import (
    DenseOrthogonal,
    Householder,
    PackedUpper,
    SylvesterTransform,
    householder_product,
)
from varfam.families.mixture import mixture_of_diagonal_gaussians
from varfam.parts import autocast, fp32
from varfam.registry import FAMILIES

f64 = torch.float64


# ------------------------------------------------------------------ vMF
@pytest.mark.parametrize("dim", [3, 10, 64])
def test_vmf_normalizer_is_the_bessel_formula_with_its_derivatives(dim: int) -> None:
    kappa = torch.tensor([0.01, 1.0, 30.0, 500.0, 1e4], dtype=f64, requires_grad=True)
    v = dim / 2 - 1
    log_c, mean = vmf_normalizer(kappa, dim)
    ref_log_c = v * torch.log(kappa) - dim / 2 * math.log(2 * math.pi) - log_bessel_iv(v, kappa)
    ref_mean = bessel_ratio(v, kappa)
    torch.testing.assert_close(log_c, ref_log_c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-12, atol=1e-12)
    for got, ref in ((log_c, ref_log_c), (mean, ref_mean)):
        (g,) = torch.autograd.grad(got.sum(), kappa, retain_graph=True)
        (r,) = torch.autograd.grad(ref.sum(), kappa, retain_graph=True)
        torch.testing.assert_close(g[:-1], r[:-1], rtol=1e-7, atol=1e-14)
        # at kappa = 1e4, A' ~ (D-1)/(2 kappa^2) is 1 - A^2 - (D-1)A/kappa cancelled to 1e-8;
        # both ways of computing it keep about 4 digits (mpmath: 2e-4 and 4e-5 relative)
        torch.testing.assert_close(g[-1:], r[-1:], rtol=1e-3, atol=0.0)


def test_the_sampler_gradient_is_the_same_with_a_given_mean() -> None:
    kappa = torch.tensor([0.5, 8.0, 900.0], dtype=f64, requires_grad=True)
    grads = []
    for mean in (None, bessel_ratio(4.0, kappa).detach()):
        torch.manual_seed(3)
        (g,) = torch.autograd.grad(sample_vmf_w(kappa, 10, mean).sum(), kappa)
        grads.append(g)
    torch.testing.assert_close(grads[0], grads[1])


# ------------------------------------------------------------------ Sylvester
def _dense_step(x, q, r, rt, b):
    """f(x) = x + Q R tanh(R~ Q^T x + b) with dense matrices, and its log|det J|."""
    v = torch.einsum("bdm,...bd->...bm", q, x)
    t = torch.tanh(torch.einsum("bij,...bj->...bi", rt, v) + b)
    y = x + torch.einsum("bdm,...bm->...bd", q, torch.einsum("bij,...bj->...bi", r, t))
    diag = r.diagonal(dim1=-2, dim2=-1) * rt.diagonal(dim1=-2, dim2=-1)
    return y, torch.log1p(diag * (1 - t * t)).sum(-1)


@pytest.mark.parametrize("kind", ["householder", "orthogonal"])
def test_a_sylvester_step_without_matrices_is_the_dense_formula(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    b_, d = 5, 4
    rows, cols = torch.triu_indices(d, d, 1)
    diag = [torch.tanh(torch.randn(b_, d, generator=g, dtype=f64)) for _ in range(2)]
    off = [torch.randn(b_, len(rows), generator=g, dtype=f64) for _ in range(2)]
    r, rt = (PackedUpper(dg, o, rows, cols) for dg, o in zip(diag, off))
    raw = torch.randn(b_, 3, d, generator=g, dtype=f64)
    if kind == "householder":
        orth, q = Householder(raw), householder_product(raw)
    else:
        q = torch.linalg.qr(torch.randn(b_, d, d, generator=g, dtype=f64)).Q
        orth = DenseOrthogonal(q)
    bias = torch.randn(b_, d, generator=g, dtype=f64)
    step = SylvesterTransform(orth, r, rt, bias)
    x = torch.randn(2, b_, d, generator=g, dtype=f64)
    y, ldj = step.forward_and_log_det(x)
    y_ref, ldj_ref = _dense_step(x, q, r.dense(), rt.dense(), bias)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(ldj, ldj_ref)
    torch.testing.assert_close(step.q, q)
    torch.testing.assert_close(PackedUpper.of(r.dense()).dense(), r.dense())
    x_back, _ = step.inverse_and_log_det(y)
    torch.testing.assert_close(x_back, x, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ mixture
def _sequential_rsample(q, sample_shape):
    """The implicit gradient by autograd through a loop over coordinates (the direct form)."""
    comp = q.component_distribution.base_dist
    loc, scale, logits = comp.loc, comp.scale, q.mixture_distribution.logits
    with torch.no_grad():
        z_exact = q.sample(sample_shape)
    log_resp, coords = 0.0, []
    for d in range(q.event_shape[0]):
        log_w = torch.log_softmax(logits + log_resp, -1)
        std = (z_exact[..., d, None] - loc[..., d]) / scale[..., d]
        cdf = (log_w.exp() * torch.special.ndtr(std)).sum(-1)
        log_pdf = torch.logsumexp(log_w - 0.5 * std**2 - torch.log(scale[..., d]), -1)
        density = (log_pdf - 0.5 * math.log(2 * math.pi)).detach().exp()
        z_d = z_exact[..., d] - (cdf - cdf.detach()) / density
        coords.append(z_d)
        log_resp = log_resp - 0.5 * ((z_d[..., None] - loc[..., d]) / scale[..., d]) ** 2 \
            - torch.log(scale[..., d])
    return torch.stack(coords, -1)


def test_the_mixture_gradient_by_one_solve_is_the_sequential_one() -> None:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 4, generator=g, dtype=f64).requires_grad_()
    loc = torch.randn(3, 4, 5, generator=g, dtype=f64).requires_grad_()
    scale = (0.5 + torch.rand(3, 4, 5, generator=g, dtype=f64)).requires_grad_()
    weights = torch.randn(2, 3, 5, generator=g, dtype=f64)
    grads = []
    for sample in (lambda q: q.rsample((2,)), lambda q: _sequential_rsample(q, (2,))):
        torch.manual_seed(4)
        z = sample(mixture_of_diagonal_gaussians(logits, loc, scale))
        grads.append(torch.autograd.grad((weights * z).sum(), (logits, loc, scale)))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------ bf16 networks
@pytest.mark.parametrize("name", ["sylvester", "iaf", "realnvp"])
def test_flow_networks_run_in_bf16_under_bf16_training_and_densities_stay_fp32(name: str) -> None:
    torch.manual_seed(0)
    fam = FAMILIES.build(name, 16, 3, options={"flow_steps": 2})
    h = torch.randn(4, 16)
    with torch.no_grad():
        torch.manual_seed(1)
        exact = fam(h).log_prob(fam(h).sample((2,)))
        with autocast(torch.device("cpu"), True), fp32("cpu"):
            torch.manual_seed(1)
            q = fam(h)
            z = q.sample((2,))
            lp = q.log_prob(z)
    assert z.dtype == lp.dtype == torch.float32
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp, exact, rtol=0.1, atol=0.5)
