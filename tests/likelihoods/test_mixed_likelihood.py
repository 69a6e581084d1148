"""The mixed likelihood of tables: every column type's factor is normalized, sampling matches
its density, the ordinal factor is HI-VAE's cumulative logit, and missing cells never leak
NaN into values or gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import varfam
from varfam.data.columns import Column
from varfam.errors import VarfamError
from varfam.likelihoods.mixed import (
    MixedLikelihood,
    OrderedLogistic,
    cumulative_logit_log_probs,
    ordered_thresholds,
)
from varfam.nets.tabular import TabularEncoder

DT = torch.float64
NAN = float("nan")

#: one column of every type (with the statistics a table would record)
COLUMNS = [
    {"name": "r", "type": "real", "loc": 2.0, "scale": 3.0},
    {"name": "p", "type": "positive", "loc": 1.0, "scale": 0.5},
    {"name": "c", "type": "count", "loc": 4.0},
    {"name": "nb", "type": "count-nb", "loc": 3.0},
    {"name": "cat", "type": "categorical", "levels": ["a", "b", "c", "d"]},
    {"name": "ord", "type": "ordinal", "levels": 5},
]
KINDS = [c["type"] for c in COLUMNS]


def likelihood(**options) -> MixedLikelihood:
    return MixedLikelihood((len(COLUMNS),), columns=COLUMNS, **options).double()


def params(lik: MixedLikelihood, batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, lik.params_per_value, len(COLUMNS), generator=g, dtype=DT)


def only(j: int, values: torch.Tensor) -> torch.Tensor:
    """Rows (..., C) with column j set to ``values`` and every other cell missing (NaN)."""
    x = torch.full((*values.shape, len(COLUMNS)), NAN, dtype=DT)
    x[..., j] = values
    return x


def column_log_prob(px, j: int, values: torch.Tensor) -> torch.Tensor:
    """log p(x_j = values | z) per row: values (n, B) → (n, B), the others masked."""
    return px.log_prob(only(j, values))


# ------------------------------------------------------------------ normalization
@pytest.mark.parametrize("j", [KINDS.index(k) for k in ("count", "count-nb")])
def test_count_factors_sum_to_one(j: int) -> None:
    px = likelihood()(params(likelihood()))
    counts = torch.arange(0, 400, dtype=DT)[:, None].expand(-1, 3)
    total = column_log_prob(px, j, counts).exp().sum(0)
    torch.testing.assert_close(total, torch.ones(3, dtype=DT), atol=1e-8, rtol=0)


@pytest.mark.parametrize("j", [KINDS.index(k) for k in ("categorical", "ordinal")])
def test_level_factors_sum_to_one(j: int) -> None:
    lik = likelihood()
    px = lik(params(lik, seed=1))
    k = lik.columns[j].n_levels
    levels = torch.arange(k, dtype=DT)[:, None].expand(-1, 3)
    total = column_log_prob(px, j, levels).exp().sum(0)
    torch.testing.assert_close(total, torch.ones(3, dtype=DT), atol=1e-10, rtol=0)


@pytest.mark.parametrize("scale", ["row", "column"])
@pytest.mark.parametrize("j", [KINDS.index(k) for k in ("real", "positive")])
def test_continuous_factors_integrate_to_one_in_original_units(j: int, scale: str) -> None:
    """∫ p(x) dx = 1 over the original units: the model-unit density plus the Jacobian
    of the standardization (and of the log, for positive columns)."""
    lik = likelihood(scale=scale, min_scale=0.01)
    px = lik(params(lik, seed=2))
    col = lik.columns[j]
    if col.type == "real":
        xs = np.linspace(col.loc - 40 * col.scale, col.loc + 40 * col.scale, 40001)
    else:  # log x spans loc ± 40 scale
        xs = np.exp(np.linspace(col.loc - 40 * col.scale, col.loc + 40 * col.scale, 40001))
    u = torch.from_numpy(col.to_model(xs))[:, None].expand(-1, 3)
    dens = (column_log_prob(px, j, u) + torch.from_numpy(col.log_jacobian(u.numpy()))).exp()
    total = torch.from_numpy(np.trapezoid(dens.detach().numpy(), xs, axis=0))
    torch.testing.assert_close(total, torch.ones(3, dtype=DT), atol=1e-4, rtol=0)


# ------------------------------------------------------------------ sampling
def test_samples_match_the_densities() -> None:
    """Empirical frequencies of 20,000 draws against the masses (discrete columns) and
    sample moments against the factor's moments (continuous columns)."""
    lik = likelihood()
    px = lik(params(lik, batch=2, seed=3))
    torch.manual_seed(0)
    s = px.sample((20_000,))  # (n, B, C)
    assert s.shape == (20_000, 2, len(COLUMNS))
    for j, kind in enumerate(KINDS):
        if kind in ("real", "positive"):
            normal = px.factors[0].dist  # the real and positive columns share one Normal
            i = px.factors[0].index.tolist().index(j)
            torch.testing.assert_close(s[..., j].mean(0), normal.loc[:, i], atol=0.05, rtol=0)
            torch.testing.assert_close(s[..., j].std(0), normal.scale[:, i], atol=0.05, rtol=0.03)
            continue
        top = 60 if kind.startswith("count") else lik.columns[j].n_levels
        values = torch.arange(top, dtype=DT)[:, None].expand(-1, 2)
        masses = column_log_prob(px, j, values).exp()  # (top, B)
        freq = torch.stack([(s[..., j] == v).to(DT).mean(0) for v in range(top)])
        tv = 0.5 * (freq - masses).abs().sum(0)
        assert (tv < 0.03).all(), (kind, tv)


# ------------------------------------------------------------------ the ordinal factor
def test_cumulative_logit_matches_its_definition() -> None:
    g = torch.Generator().manual_seed(4)
    eta = 3 * torch.randn(6, generator=g, dtype=DT)
    theta = ordered_thresholds(torch.randn(6, 4, generator=g, dtype=DT))
    assert (theta.diff(dim=-1) > 0).all()
    probs = cumulative_logit_log_probs(eta, theta).exp()
    cdf = torch.sigmoid(theta - eta[:, None])  # P(x ≤ j) for j < K - 1
    torch.testing.assert_close(probs.cumsum(-1)[:, :-1], cdf)
    torch.testing.assert_close(probs.sum(-1), torch.ones(6, dtype=DT))


def test_cumulative_logit_is_finite_far_out() -> None:
    eta = torch.tensor([-80.0, 0.0, 80.0], requires_grad=True)
    raw = torch.zeros(3, 3, requires_grad=True)
    lp = cumulative_logit_log_probs(eta, ordered_thresholds(raw))
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(eta.grad).all() and torch.isfinite(raw.grad).all()


def test_ordered_logistic_median_and_probs() -> None:
    d = OrderedLogistic(torch.tensor([0.0, 5.0]), torch.tensor([[-1.0, 1.0], [-1.0, 1.0]]))
    assert d.median.tolist() == [1, 2]
    assert d.sample((5,)).shape == (5, 2)


# ------------------------------------------------------------------ missing cells
def test_masked_cells_never_leak_nan() -> None:
    """With NaN in the masked cells, log p(x_obs|z) and its gradient are finite and equal
    the sum of the factors' log-masses/densities over the observed cells alone (computed
    on a complete table, then selected); a fully masked column gets zero gradient."""
    lik = likelihood()
    full = torch.tensor([[0.3, -0.2, 2.0, 1.0, 3.0, 4.0]] * 3, dtype=DT)
    hidden = torch.zeros_like(full, dtype=torch.bool)
    hidden[0, :3] = True
    hidden[1] = True
    hidden[2, 4] = True
    hidden[:, 5] = True  # the ordinal column is missing everywhere
    p = params(lik).requires_grad_()
    lp = lik(p).log_prob(full.masked_fill(hidden, NAN))
    lp.sum().backward()
    grad, p.grad = p.grad, None
    assert torch.isfinite(lp).all() and torch.isfinite(grad).all()
    assert lp[1] == 0  # nothing observed
    cells = torch.zeros_like(full)  # every cell's log-density on the complete table
    for f in lik(p).factors:
        cells[:, f.index] = f.dist.log_prob(full[:, f.index])
    reference = (cells * ~hidden).sum(1)
    reference.sum().backward()
    torch.testing.assert_close(lp, reference.detach())
    torch.testing.assert_close(grad, p.grad)
    assert (grad[:, :, 5] == 0).all() and (grad[1] == 0).all()


def test_vae_trains_on_a_table_with_holes_under_iwae() -> None:
    torch.manual_seed(0)
    model = varfam.VAE.build(data_shape=(len(COLUMNS),), likelihood="mixed",
                             likelihood_options={"columns": COLUMNS}, arch="tabular",
                             arch_options={"levels": [Column.from_dict(c).n_levels
                                                      for c in COLUMNS]},
                             hidden=(16,), latent_dim=2, family="full")
    x = torch.tensor([[0.3, -0.2, 2.0, 1.0, 3.0, 4.0], [NAN, 1.0, NAN, 0.0, NAN, 2.0]])
    objective = varfam.objectives.Iwae(k=4, estimator="dreg")
    loss = objective(model, x).loss
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    assert all(p.grad is not None for p in model.decoder.parameters())
    # and it trains: the bound on the observed cells rises over steps on these two rows
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def bound() -> float:  # the mean ELBO of the two rows over 20 draws
        with torch.no_grad():
            return float(torch.stack([objective(model, x).elbo.mean() for _ in range(20)]).mean())

    before = bound()
    for _ in range(150):
        opt.zero_grad()
        objective(model, x).loss.backward()
        opt.step()
    assert bound() > before + 1.0


def test_tabular_encoder_reads_values_levels_and_mask() -> None:
    enc = TabularEncoder((3,), (8,), levels=[0, 3, 0])
    x = torch.tensor([[1.0, 2.0, NAN], [NAN, NAN, 0.5]], requires_grad=True)
    f = enc.features(x)
    assert torch.isfinite(f).all()
    torch.testing.assert_close(f[0, 2:5], torch.tensor([0.0, 0.0, 1.0]))  # one-hot level 2
    torch.testing.assert_close(f[1, 2:5], torch.zeros(3))  # missing level: no code
    torch.testing.assert_close(f[:, 5:], torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    enc(x).sum().backward()
    assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------------ points and checks
def test_mean_is_a_point_value_per_column() -> None:
    lik = likelihood()
    px = lik(params(lik))
    m = px.mean
    assert m.shape == (3, len(COLUMNS)) and torch.isfinite(m).all()
    cat = px.factors[[f.kind for f in px.factors].index("categorical")].dist
    assert m[:, KINDS.index("categorical")].tolist() == cat.probs.argmax(-1)[:, 0].tolist()


@pytest.mark.parametrize(("j", "value", "fragment"), [
    (2, -1.0, "not counts"), (3, 1.5, "not counts"), (4, 4.0, "level codes"),
    (5, -1.0, "level codes"), (0, math.inf, "infinite"),
])
def test_check_data_names_the_column(j: int, value: float, fragment: str) -> None:
    x = torch.zeros(2, len(COLUMNS), dtype=DT)
    x[1, j] = value
    with pytest.raises(VarfamError, match=fragment) as e:
        likelihood().check_data(x)
    assert f"'{COLUMNS[j]['name']}'" in str(e.value)
    likelihood().check_data(torch.full((2, len(COLUMNS)), NAN, dtype=DT))  # holes are fine


def test_bad_options_are_user_errors() -> None:
    with pytest.raises(VarfamError, match="tables of shape"):
        MixedLikelihood((1, 2, 2))
    with pytest.raises(VarfamError, match="describes 1 columns"):
        MixedLikelihood((2,), columns=["real"])
    with pytest.raises(VarfamError, match="unknown type"):
        MixedLikelihood((1,), columns=["colour"])
    with pytest.raises(VarfamError, match="no levels"):
        MixedLikelihood((1,), columns=[{"type": "categorical"}])
