"""The pieces issue 25 made one of: the eval-mode/seed context, "has a classifier", the
data-shape check, the importance weights and the run's pictures."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import pytest
import torch

from varfam.errors import VarfamError
from varfam.evaluation.bounds import evaluate, importance_sampling
from varfam.evaluation.importance import block_sizes, weighed_draws
from varfam.model import VAE

SHAPE = (1, 8, 8)


def _model(**options) -> VAE:
    torch.manual_seed(1)
    return VAE.build(data_shape=SHAPE, latent_dim=2, hidden=(16,), **options)


def _data(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, *SHAPE, generator=g).round(), torch.randint(3, (n,), generator=g)


# ---------------------------------------------------------------- has a classifier
@pytest.mark.parametrize("options, expected", [
    ({}, False),
    ({"condition": "label", "n_classes": 3}, False),
    ({"condition": "label", "n_classes": 3, "classifier": True}, True),
])
def test_has_classifier_on_the_three_kinds_of_model(options, expected) -> None:
    model = _model(**options)
    assert model.has_classifier is expected
    assert model.uses_labels is bool(options)
    x, _ = _data(4)
    if expected:
        assert model.classify(x).logits.shape == (4, 3)
    else:
        with pytest.raises(VarfamError, match="no classifier"):
            model.classify(x)


# ---------------------------------------------------------------- the shape check
def test_the_shape_check_names_both_shapes_and_the_fix() -> None:
    model = _model()
    model.check_data(torch.zeros(3, *SHAPE))  # fits: nothing raised
    with pytest.raises(VarfamError) as caught:
        model.check_data(torch.zeros(3, 1, 9, 9), "the test data")
    message = str(caught.value)
    assert message.startswith("the test data of shape (1, 9, 9) per example")
    assert "does not fit this model's data_shape (1, 8, 8)" in message
    assert "use data like its training data" in message and "\n" not in message


def test_every_caller_gives_the_same_shape_message() -> None:
    from varfam.reporting.explore.explorer import Explorer

    model, bad = _model(), torch.zeros(3, 1, 9, 9)
    messages = []
    for call in (lambda: evaluate(model, bad, iw=2), lambda: Explorer(model, bad),
                 lambda: model.check_data(bad)):
        with pytest.raises(VarfamError) as caught:
            call()
        messages.append(re.sub(r"^.*? of shape", "of shape", str(caught.value)))
    assert len(set(messages)) == 1, messages


def test_the_shape_check_reads_a_dataset_and_checks_values_when_asked() -> None:
    from varfam.data import Dataset

    model = _model()
    x, _ = _data(4)
    model.check_data(Dataset("d", x, x))
    with pytest.raises(VarfamError, match=r"data_shape \(1, 8, 8\)"):
        model.check_data(Dataset("d", x.flatten(1), x.flatten(1)))
    model.check_data(torch.full((2, *SHAPE), 7.0))  # the shape alone fits
    with pytest.raises(VarfamError):
        model.check_data(torch.full((2, *SHAPE), 7.0), values=True)  # not Bernoulli data


# ---------------------------------------------------------------- eval mode and seed
@pytest.mark.parametrize("training", [True, False])
def test_evaluating_restores_the_mode_and_the_random_state(training: bool) -> None:
    model = _model().train(training)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with model.evaluating(seed=5) as same:
        assert same is model and not model.training
        a = model.sample(3)
    assert model.training is training
    assert torch.equal(torch.get_rng_state(), before)  # the caller's state, untouched
    with model.evaluating(seed=5):
        b = model.sample(3)
    assert torch.equal(a, b)  # the seed decides the draws


def test_evaluating_without_a_seed_draws_from_the_global_state() -> None:
    model = _model()
    torch.manual_seed(7)
    with model.evaluating():
        a = torch.rand(2)
    torch.manual_seed(7)
    assert torch.equal(a, torch.rand(2))


def test_evaluating_restores_the_mode_when_the_block_raises() -> None:
    model = _model().train()
    before = torch.get_rng_state()
    with pytest.raises(RuntimeError), model.evaluating(seed=1):
        torch.rand(4)
        raise RuntimeError("inside")
    assert model.training and torch.equal(torch.get_rng_state(), before)


def test_measures_leave_the_mode_and_random_state_alone() -> None:
    from varfam.evaluation.classify import predict
    from varfam.reporting.pictures import run_pictures
    from varfam.tables.imputation import sample_table

    model = _model(condition="label", n_classes=3, classifier=True).train()
    x, y = _data()
    torch.manual_seed(9)
    before = torch.get_rng_state()
    evaluate(model, x, iw=3, labels=y)
    importance_sampling(model, x, 4, seed=0, y=y)
    predict(model, x)
    run_pictures(model, x, y, keys=["samples"])
    assert model.training and torch.equal(torch.get_rng_state(), before)
    with pytest.raises(VarfamError):  # not a table run: refused before any draw
        sample_table(model, 2)


# ---------------------------------------------------------------- the importance weights
def test_block_sizes_keep_a_decoder_call_within_memory() -> None:
    model = _model()
    per_latent = 4 * 64  # Bernoulli: one parameter per pixel, 4 bytes each
    rows, samples = block_sizes(model, 1000, 50, memory_mb=1.0)
    assert rows * samples * per_latent <= 2**20 and (rows, samples) == (1000, 4)
    rows, samples = block_sizes(model, 1000, 50, memory_mb=1.0, samples=50)  # all draws at once
    assert samples == 50 and rows == 2**20 // per_latent // 50
    assert block_sizes(model, 3, 50, memory_mb=1e-6) == (1, 1)  # at least one of each


def test_importance_sampling_is_the_log_mean_of_the_weighed_draws() -> None:
    model = _model().eval()
    x, _ = _data()
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(4)
        log_w = torch.cat([d.log_w for d in weighed_draws(model, x, 20, rows=5, samples=3)])
    res = importance_sampling(model, x, 20, seed=4, batch_size=5, k_chunk=3)
    assert log_w.shape == (20, 12) and log_w.dtype == torch.float64
    expected = torch.logsumexp(log_w, 0) - math.log(20)
    assert torch.allclose(res.log_likelihood, expected, rtol=0, atol=1e-9)
    assert torch.allclose(res.elbo, log_w.mean(0), rtol=0, atol=1e-9)


def test_weighed_draws_do_not_depend_on_the_decoder_blocks() -> None:
    model = _model().eval()
    x, _ = _data()
    runs = []
    for rows, samples in ((12, 10), (5, 3), (1, 1)):
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(2)
            runs.append(torch.cat([d.z for d in weighed_draws(model, x, 10, rows=rows,
                                                               samples=samples)]))
    assert all(torch.equal(runs[0], r) for r in runs[1:])


def test_weighed_draws_return_the_decoded_likelihood_of_one_block() -> None:
    model = _model().eval()
    x, _ = _data(4)
    with torch.no_grad():
        (draws,) = weighed_draws(model, x, 6, rows=4, samples=6, decoded=True)
        assert draws.decoded is not None and draws.decoded.batch_shape == (24,)
        with pytest.raises(ValueError, match="one block"):
            next(weighed_draws(model, x, 6, rows=2, samples=6, decoded=True))


# ---------------------------------------------------------------- the run's pictures
def test_the_files_and_the_page_show_the_same_pictures(tmp_path: Path) -> None:
    from varfam.reporting.page import render_report
    from varfam.reporting.pictures import run_pictures, write_run_pictures

    model = _model(condition="label", n_classes=3)
    x, y = _data()
    written = write_run_pictures(model, x, y, tmp_path, seed=3)
    assert list(written) == ["reconstructions", "samples", "interpolation", "latent"]
    pictures = {p.key: p for p in run_pictures(model, x, y, seed=3)}
    assert list(pictures) == ["reconstructions", "samples", "interpolations", "traversals",
                              "latent-map", "manifold"]
    for p in pictures.values():
        if p.file is not None:
            assert (tmp_path / p.file).read_bytes() == p.png(), p.key
    metrics = evaluate(model, x, iw=2, labels=y)
    page = render_report(tmp_path, model, {}, x, y, metrics, seed=3)
    embedded = {base64.b64decode(src) for src in re.findall(r'base64,([^"]+)"', page)}
    assert all(p.png() in embedded for p in pictures.values() if p.key != "traversals")
