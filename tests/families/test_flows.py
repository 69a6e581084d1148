"""The flow families: exact log-determinants, inverses, normalization, invertibility, training.

Every flow is checked with per-example parameters (a batch of different h) in
float64: log|det J| of each step against ``torch.autograd.functional.jacobian``,
``inverse(forward(z)) == z``, ``log_prob`` of a flow's own sample (the cached path
the ELBO takes) against ``log_prob`` of a copy (the numerical-inverse path), the
density integrating to one on a 2-D grid, and gradients of the numerical inverse
against finite differences.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

import varfam
from _quadrature import mass, sample_box
from varfam.errors import VarfamError
from varfam.families.flows import FlowTransform, solve_x_plus_tanh
from varfam.families.flows_autoregressive import IAFTransform
from varfam.families.flows_planar import PlanarFlow, PlanarTransform, RadialTransform
from varfam.families.flows_sylvester import SylvesterTransform
from varfam.registry import FAMILIES

FEATURES = 5
FLOWS = ["planar", "radial", "sylvester", "iaf", "realnvp"]
#: (name, options): every flow, both Sylvester kinds (orthogonal also with M < D), small nets
VARIANTS = [
    ("planar", {}),
    ("radial", {}),
    ("sylvester", {}),
    ("sylvester", {"kind": "orthogonal"}),
    ("sylvester", {"kind": "orthogonal", "vectors": 2}),
    ("iaf", {"flow_hidden": 16}),
    ("realnvp", {"flow_hidden": 16}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}" if o else n for n, o in VARIANTS]


def build(name: str, options: dict, latent_dim: int = 3, dtype=torch.float64, seed: int = 0):
    torch.manual_seed(seed)
    return FAMILIES.build(name, FEATURES, latent_dim, options=options).to(dtype)


def features(batch: int, scale: float = 1.0, dtype=torch.float64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, FEATURES, generator=g, dtype=torch.float64).to(dtype)


def test_every_flow_is_registered_with_flow_steps() -> None:
    for name in FLOWS:
        entry = FAMILIES.entry(name)
        assert entry.description and entry.reference
        for k in (1, 3):
            q = FAMILIES.build(name, FEATURES, 2, options={"flow_steps": k})(features(2).float())
            assert len(q.transforms) == k
            assert all(isinstance(t, FlowTransform) for t in q.transforms)


# ------------------------------------------------------------------ log-determinants
@pytest.mark.parametrize(
    ("name", "options", "latent_dim"),
    [
        pytest.param(n, o, d, id=f"{i}-D{d}")
        for d in (1, 3)
        for i, (n, o) in zip(IDS, VARIANTS, strict=True)
        if o.get("vectors", 0) <= d  # an orthogonal Sylvester flow needs M <= D
    ],
)
def test_log_det_matches_autograd_jacobian(name: str, options: dict, latent_dim: int) -> None:
    batch = 4
    family = build(name, options, latent_dim)
    q = family(features(batch, scale=2.0))
    x = torch.randn(batch, latent_dim, dtype=torch.float64)
    for step, t in enumerate(q.transforms):
        y, ldj = t.forward_and_log_det(x)
        assert ldj.shape == (batch,)
        jac = jacobian(lambda v, t=t: t.forward_and_log_det(v)[0], x)  # (B, D, B, D)
        for b in range(batch):
            expected = torch.linalg.slogdet(jac[b, :, b, :])
            assert expected.sign > 0, f"{name} step {step}: orientation-reversing"
            torch.testing.assert_close(ldj[b], expected.logabsdet, rtol=1e-9, atol=1e-9)
            others = torch.cat([jac[b, :, :b], jac[b, :, b + 1 :]], 1)
            assert others.abs().max() == 0  # each example only moves with its own input
        # the public Transform API agrees (both through the cache and without it)
        y2 = t(x)
        torch.testing.assert_close(t.log_abs_det_jacobian(x, y2), ldj)
        torch.testing.assert_close(t.log_abs_det_jacobian(x.clone(), y2.clone()), ldj)
        x = y.detach()


def test_iaf_steps_are_autoregressive_in_alternating_orders() -> None:
    family = build("iaf", {"flow_hidden": 16}, latent_dim=4)
    q = family(features(1))
    x = torch.randn(1, 4, dtype=torch.float64)
    for step, t in enumerate(q.transforms):
        jac = jacobian(lambda v, t=t: t.forward_and_log_det(v)[0], x)[0, :, 0, :]
        triangle = torch.triu(jac, 1) if step % 2 == 0 else torch.tril(jac, -1)
        assert triangle.abs().max() == 0, f"step {step} is not autoregressive in its order"
        assert (jac - torch.diag(torch.diagonal(jac))).abs().max() > 0  # and not trivial


# ------------------------------------------------------------------ inverses
@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_inverse_of_forward_is_identity(name: str, options: dict, dtype: torch.dtype) -> None:
    family = build(name, options, latent_dim=4, dtype=dtype)
    q = family(features(5, scale=3.0, dtype=dtype))
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    with torch.no_grad():
        x = 3 * torch.randn(2, 5, 4, dtype=dtype)  # sample dims broadcast over parameters
        for t in q.transforms:
            y, ldj = t.forward_and_log_det(x)
            x_back, ldj_back = t.inverse_and_log_det(y)
            torch.testing.assert_close(x_back, x, rtol=tol, atol=tol)
            torch.testing.assert_close(ldj_back, ldj, rtol=tol, atol=tol)
            x = y


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_log_prob_of_own_sample_is_cached_and_exact(
    name: str, options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ELBO's log q(z) of a drawn z needs no inverse and equals the exact density."""
    family = build(name, options, latent_dim=3)
    q = family(features(4))
    z = q.rsample((6,))

    def no_inverse(self, y):  # the cached path must not invert
        raise AssertionError("log_prob of an own sample called an inverse")

    for cls in {type(t) for t in q.transforms}:
        monkeypatch.setattr(cls, "inverse_and_log_det", no_inverse)
    cached = q.log_prob(z)
    assert cached.shape == (6, 4)
    monkeypatch.undo()
    torch.testing.assert_close(q.log_prob(z.clone()), cached, rtol=1e-9, atol=1e-9)
    # by hand: base density of z0 minus the log-determinants along the path
    z0 = q.base_dist.sample((6,))
    manual, zk = q.base_dist.log_prob(z0), z0
    for t in q.transforms:
        zk, ldj = t.forward_and_log_det(zk)
        manual = manual - ldj
    torch.testing.assert_close(q.log_prob(zk.clone()), manual, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_float32_log_prob_over_sample_shapes(name: str, options: dict) -> None:
    """Both float32 paths (own sample, arbitrary point) agree with float64 at the same z."""
    family = build(name, options, latent_dim=3, dtype=torch.float32)
    with torch.no_grad():
        q = family(features(4, dtype=torch.float32))
        z = q.sample((2, 50))
        cached, fresh = q.log_prob(z), q.log_prob(z.clone())
        exact = family.double()(features(4)).log_prob(z.double())
    assert cached.dtype == fresh.dtype == torch.float32 and fresh.shape == (2, 50, 4)
    torch.testing.assert_close(cached.double(), exact, rtol=1e-5, atol=2e-4)
    torch.testing.assert_close(fresh.double(), exact, rtol=1e-5, atol=2e-4)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_log_prob_broadcasts_points_over_the_batch(name: str, options: dict) -> None:
    """z (S, 1, D) is scored under every member of the batch at once (as a VampPrior does)."""
    family = build(name, options, latent_dim=3)
    q = family(features(4))
    z = torch.randn(5, 1, 3, dtype=torch.float64)
    expected = torch.stack([q.log_prob(z[i].expand(4, 3).clone()) for i in range(5)])
    torch.testing.assert_close(q.log_prob(z), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_gradients_of_log_prob_of_an_arbitrary_point(name: str, options: dict) -> None:
    """Numerical inverses are differentiable in z and in h with the exact derivatives."""
    family = build(name, options, latent_dim=2)
    h = features(2).requires_grad_()
    z = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, z: family(h).log_prob(z), (h, z))


def test_scalar_root_solver_on_hard_cases() -> None:
    """x + p tanh(q x + s) = t, including p q close to -1 (nearly flat) and large p."""
    # the last case starts at a bracket end where Newton jumps to the other end and back
    p = torch.tensor([-0.999999, 5.0, -50.0, 1e4, 0.0, 7.5e5], dtype=torch.float64)
    q = torch.tensor([1.0, 2.0, 0.0199, -1e-4 + 1e-12, 3.0, 1.0], dtype=torch.float64)
    s = torch.tensor([0.0, -1.0, 2.0, 0.5, 0.0, 0.0], dtype=torch.float64)
    x_true = torch.tensor([1e-3, 0.3, -40.0, 7.0, 2.0, -2.4e-3], dtype=torch.float64)
    t = x_true + p * torch.tanh(q * x_true + s)
    torch.testing.assert_close(solve_x_plus_tanh(t, p, q, s), x_true, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ invertibility constraints
def test_planar_constraint_holds_for_adversarial_parameters() -> None:
    g = torch.Generator().manual_seed(5)
    d = 3
    w = torch.randn(6, d, generator=g, dtype=torch.float64)
    w[1] *= 1e-6  # nearly zero w
    w[2] *= 1e4  # huge w
    u = torch.randn(6, d, generator=g, dtype=torch.float64)
    u[0] = -1e6 * w[0]  # w.u hugely negative: the raw map folds over
    u[3] = -w[3] / (w[3] ** 2).sum()  # w.u = -1 exactly
    u[4] = 1e6 * w[4]  # hugely positive
    u[5] = -3 * w[5] / (w[5] ** 2).sum()  # w.u = -3: not invertible without the fix
    t = PlanarTransform(u, w, torch.zeros(6, dtype=torch.float64))
    wu_hat = (w * t.u_hat).sum(-1)
    scale = (w.norm(dim=-1) * u.norm(dim=-1)).clamp_min(1.0)
    assert (wu_hat >= -1 - 1e-12 * scale).all()
    # injective along w: a -> a + (w.u_hat) tanh(a) is increasing, so det J > 0 everywhere
    x = torch.randn(1000, 6, d, generator=g, dtype=torch.float64)
    y, ldj = t.forward_and_log_det(x)
    assert torch.isfinite(ldj).all()
    a = torch.linspace(-20, 20, 4001, dtype=torch.float64)[:, None]
    line = a + wu_hat * torch.tanh(a)
    assert (line.diff(dim=0) >= 0).all()
    x_back, ldj_back = t.inverse_and_log_det(y)
    torch.testing.assert_close(x_back, x, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ldj_back, ldj, rtol=1e-6, atol=1e-6)


def test_planar_family_stays_invertible_for_extreme_heads() -> None:
    family = PlanarFlow(FEATURES, 2, flow_steps=2).double()
    with torch.no_grad():  # u = -100 w for both steps, whatever h is
        family.heads.weight.zero_()
        bias = torch.tensor([-100.0, 50.0, 1.0, 0.5, 0.0, 2.0, 3.0, -200.0, -300.0, 1.0])
        family.heads.bias.copy_(bias.double())
    q = family(features(3))
    z = q.sample((50,))
    lp = q.log_prob(z.clone())
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp, q.log_prob(z), rtol=1e-6, atol=1e-6)


def test_radial_constraint_for_extreme_heads() -> None:
    family = build("radial", {}, latent_dim=3)
    with torch.no_grad():  # raw alpha, beta of -60 .. 60
        family.heads.bias.copy_(60 * (2 * torch.rand_like(family.heads.bias) - 1))
    q = family(features(4, scale=5.0))
    for t in q.transforms:
        assert isinstance(t, RadialTransform)
        assert (t.alpha > 0).all() and (t.beta >= -t.alpha).all()
    z = q.sample((20,))
    lp = q.log_prob(z.clone())
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp, q.log_prob(z), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["householder", "orthogonal"])
def test_sylvester_diagonal_constraint_when_tanh_saturates(kind: str, dtype) -> None:
    """r_ii = tanh(30), r~_ii = tanh(-30): the product rounds to -1, yet 1 + r r~ > 0."""
    d = 3
    family = build("sylvester", {"kind": kind, "flow_steps": 2}, latent_dim=d, dtype=dtype)
    sizes = family._sizes  # Q, R off-diagonal, R~ off-diagonal, R diagonal, R~ diagonal, b
    start = sum(sizes[:3])
    with torch.no_grad():
        for k in range(2):
            offset = k * sum(sizes) + start
            family.heads.bias[offset : offset + d] = 30.0
            family.heads.bias[offset + d : offset + 2 * d] = -30.0
            family.heads.weight[offset : offset + 2 * d] = 0.0
    q = family(features(4, dtype=dtype))
    for t in q.transforms:
        assert isinstance(t, SylvesterTransform)
        diag = t.r.diagonal(dim1=-2, dim2=-1) * t.r_tilde.diagonal(dim1=-2, dim2=-1)
        assert (diag >= -1).all() and (t.one_plus_diag > 0).all()
        eye = torch.eye(d, dtype=dtype)
        torch.testing.assert_close(t.q.mT @ t.q, eye.expand_as(t.q))
    z = q.sample((20,))
    lp = q.log_prob(z)
    assert torch.isfinite(lp).all()
    if dtype == torch.float64:  # the inverse is ill-conditioned here; float64 still recovers it
        torch.testing.assert_close(q.log_prob(z.clone()), lp, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ normalization
@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_density_integrates_to_one_on_a_grid(name: str, options: dict) -> None:
    family = build(name, options, latent_dim=2, seed=3)
    with torch.no_grad():
        q = family(features(1, scale=0.7, seed=4))
        samples = q.sample((20_000,)).squeeze(1)
    total = mass(lambda z: q.log_prob(z.unsqueeze(1)).squeeze(1), sample_box(samples, 400))
    assert math.isclose(total, 1.0, abs_tol=5e-3), f"{name}{options}: integrates to {total}"


# ------------------------------------------------------------------ families, options, training
def test_location_is_the_flow_of_the_base_mean() -> None:
    for name in FLOWS:
        family = build(name, {})
        h = features(3)
        z = family.base.location(h)
        for t in family.transforms(h):
            z = t(z)
        torch.testing.assert_close(family.location(h), z)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("planar", {"flow_steps": 0}, "flow_steps"),
        ("iaf", {"flow_hidden": -1}, "flow_hidden"),
        ("sylvester", {"kind": "triangular"}, "kind"),
        ("sylvester", {"kind": "orthogonal", "vectors": 9}, "vectors"),
        ("sylvester", {"householder": 0}, "householder"),
        ("radial", {"kind": "orthogonal"}, "option"),
    ],
)
def test_bad_options_are_user_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(VarfamError, match=message):
        FAMILIES.build(name, FEATURES, 3, options=options)


def test_flow_steps_from_the_config_reach_the_family() -> None:
    model = varfam.VAE.build(
        data_shape=(1, 8, 8), hidden=(16,), latent_dim=2, family="iaf",
        family_options={"flow_steps": 2},
    )
    assert len(model.family.steps) == 2
    assert isinstance(model.encode(torch.rand(3, 1, 8, 8)).transforms[1], IAFTransform)
