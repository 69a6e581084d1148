"""Anomaly scores (issue 28): determinism, row order, ratio, complexity, AUROC, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import varfam
from varfam.errors import VarfamError
from varfam.evaluation.scores import (
    check_contamination,
    code_length,
    content_order,
    fit_background,
    perturb,
    score,
    threshold_for,
)
from varfam.registry import SCORES

METHODS = ["nll", "elbo", "recon", "ratio", "complexity", "regret"]


@pytest.fixture(scope="module")
def trained() -> tuple[varfam.VAE, torch.Tensor, torch.Tensor]:
    """A small VAE trained on digits: (model, 150 training rows, 100 test rows)."""
    data = varfam.load_dataset("digits")
    torch.manual_seed(0)
    model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=4, hidden=(64,))
    varfam.train(model, data.limit(800, 100), epochs=6, seed=0, batch_size=64, eval_every=6)
    return model.eval(), data.train[:150], data.test[:100]


def _options(method: str, model: varfam.VAE) -> dict:
    """Cheap options for each method."""
    return {"nll": {"k": 8}, "elbo": {"k": 4}, "recon": {"k": 4}, "complexity": {"k": 8},
            "ratio": {"k": 8, "background": model}, "regret": {"steps": 4}}[method]


def test_every_method_is_registered() -> None:
    assert set(METHODS) <= set(SCORES.names())


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_for_a_seed_and_row_order_preserved(method: str, trained) -> None:
    model, _, x = trained
    x = x[:40]
    opts = _options(method, model)
    first = score(model, x, method, seed=5, **opts)
    assert first.shape == (40,) and first.dtype == torch.float64
    assert bool(first.isfinite().all())
    assert torch.equal(first, score(model, x, method, seed=5, **opts))
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(1))
    assert torch.equal(score(model, x[perm], method, seed=5, **opts), first[perm])
    if method != "ratio":  # the ratio against itself is 0 for every seed
        assert not torch.equal(first, score(model, x, method, seed=6, **opts))


def test_scores_leave_the_global_random_state_alone(trained) -> None:
    model, _, x = trained
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    score(model, x[:5], "nll", k=4)
    assert torch.equal(torch.rand(3), expected)
    assert not model.training


def test_ratio_against_the_model_itself_is_zero(trained) -> None:
    model, _, x = trained
    assert torch.equal(score(model, x, "ratio", background=model, k=8), torch.zeros(100,
                                                                                  dtype=torch.float64))
    twin = copy.deepcopy(model)  # another object with the same weights: 0 by the shared seed
    assert torch.equal(score(model, x, "ratio", background=twin, k=8), torch.zeros(100,
                                                                                 dtype=torch.float64))


def test_ratio_fits_a_perturbed_background(trained) -> None:
    model, train, x = trained
    bg = fit_background(model, train, kind="perturbed", epochs=1, seed=0)
    assert bg is not model
    moved = [not torch.equal(a, b) for a, b in zip(bg.parameters(), model.parameters())]
    assert any(moved) and all(p.requires_grad for p in model.parameters())
    s = score(model, x[:20], "ratio", background=bg, k=8)
    assert bool(s.isfinite().all()) and bool((s != 0).any())
    via_train = score(model, x[:20], "ratio", train=train, kind="perturbed", epochs=1, k=8)
    assert torch.allclose(via_train, s)  # the same background, fitted with the score's seed


def test_ratio_fits_a_local_background_for_bernoulli_images(trained) -> None:
    model, train, x = trained
    bg = fit_background(model, train, epochs=1, seed=0)  # auto: local
    assert bg.config.likelihood == "autoregressive-bernoulli" and bg.latent_dim == 2
    s = score(model, x[:20], "ratio", background=bg, k=8)
    assert bool(s.isfinite().all())
    table = varfam.VAE.build(data_shape=(3,), arch="tabular", hidden=(8,), latent_dim=2,
                             likelihood="mixed")
    with pytest.raises(VarfamError, match="kind='perturbed'"):
        fit_background(table, torch.zeros(4, 3), kind="local")


def test_perturb_replaces_about_rate_of_the_values() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.full((50, 1, 8, 8), 0.5)
    x[:, :, 0, 0] = float("nan")
    y = perturb(x, 0.2, g)
    assert bool(y[:, :, 0, 0].isnan().all())  # missing stays missing
    changed = float((y.nan_to_num(0.5) != 0.5).float().mean())
    assert 0.15 < changed < 0.25  # 0.2 of the values redrawn to levels j / 255, never 0.5
    binary = perturb(torch.ones(20, 1, 8, 8), 0.5, g)
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    table = torch.arange(40.0).view(20, 2)
    mixed = perturb(table, 0.5, g)
    assert set(mixed[:, 0].tolist()) <= set(table[:, 0].tolist())  # each column's own values


def test_complexity_of_a_constant_image_is_lower_than_noise() -> None:
    g = torch.Generator().manual_seed(0)
    flat = torch.full((2, 1, 28, 28), 0.5)
    noise = torch.rand((2, 1, 28, 28), generator=g)
    for compressor in ("png", "zlib"):
        assert bool((code_length(flat, compressor) < code_length(noise, compressor)).all())
    rgb = torch.rand((1, 3, 8, 8), generator=g)
    assert float(code_length(rgb)) > 0
    with pytest.raises(VarfamError, match="images"):
        code_length(torch.rand(3, 5))


def test_planted_outliers_are_found(trained) -> None:
    """Digits against planted outliers (uniform noise images): AUROC near 1."""
    model, _, x = trained
    g = torch.Generator().manual_seed(0)
    outliers = torch.rand((20, 1, 8, 8), generator=g)
    rows = torch.cat([x, outliers])
    truth = np.r_[np.zeros(len(x)), np.ones(len(outliers))]
    for method in ("nll", "elbo", "recon"):
        s = score(model, rows, method, **_options(method, model)).numpy()
        assert roc_auc_score(truth, s) > 0.95, method


def test_regret_is_an_elbo_gain(trained) -> None:
    model, _, x = trained
    r = score(model, x[:30], "regret", steps=20)
    assert float(r.mean()) > 0  # fine-tuning each row's encoding raises its ELBO
    assert torch.equal(score(model, x[:30], "regret", steps=0), torch.zeros(30,
                                                                            dtype=torch.float64))


def test_tables_score_observed_cells_only() -> None:
    model = varfam.VAE.build(data_shape=(3,), arch="tabular", hidden=(16,), latent_dim=2,
                             likelihood="mixed")
    x = torch.tensor([[0.1, -0.3, 1.0], [float("nan"), 0.2, float("nan")], [0.0, 0.0, 0.0]])
    for method in ("nll", "elbo", "recon", "regret"):
        s = score(model, x, method, **({"steps": 3} if method == "regret" else {"k": 4}))
        assert bool(s.isfinite().all()), method
    with pytest.raises(VarfamError, match="images"):
        score(model, x, "complexity", k=4)


def test_content_order_is_the_same_wherever_rows_stand() -> None:
    x = torch.rand(30, 4)
    order = content_order(x)
    perm = torch.randperm(30)
    assert torch.equal(x[perm][content_order(x[perm])], x[order])


def test_thresholds() -> None:
    s = torch.arange(100.0)
    t = threshold_for(s, 0.1)
    assert int((s > t).sum()) == 10
    assert check_contamination(0.5) == 0.5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, x: score(m, x, "nlll"), "unknown score 'nlll'"),
        (lambda m, x: score(m, x, "nll", kk=3), "takes no option 'kk'"),
        (lambda m, x: score(m, x, "nll", k=0), "k must be"),
        (lambda m, x: score(m, x[:, :, :4, :4]), "does not fit this model"),
        (lambda m, x: score(m, x.flatten(1)), "does not fit this model"),
        (lambda m, x: score(m, torch.where(torch.arange(len(x)).view(-1, 1, 1, 1) % 7 == 3,
                                           float("nan"), x)), "rows hold NaN"),
        (lambda m, x: score(m, x, "ratio"), "needs a background model"),
        (lambda m, x: score(m, x, "complexity", compressor="gzip"), "compressor"),
        (lambda m, x: score(m, x, "regret", steps=-1), "steps"),
        (lambda m, x: check_contamination(0.7), r"\(0, 0.5\]"),
        (lambda m, x: check_contamination(0), r"\(0, 0.5\]"),
        (lambda m, x: score(m, "not numbers"), "must be numbers"),
    ],
)
def test_bad_input_ends_in_one_line(call, message: str, trained) -> None:
    model, _, x = trained
    with pytest.raises(VarfamError, match=message) as info:
        call(model, x[:14])
    assert "\n" not in str(info.value)
