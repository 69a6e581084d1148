"""Validation split, best-weights selection, early stopping, time limit, cosine learning rate."""

from __future__ import annotations

import json
import math

import pytest
import torch

import varfam
from varfam import VAE
from varfam.runs.checkpoint import load_model


def _data(n: int = 400) -> varfam.Dataset:
    return varfam.load_dataset("digits").limit(n)


def _model(data: varfam.Dataset) -> VAE:
    torch.manual_seed(0)
    return VAE.build(data_shape=data.data_shape, hidden=(32,), latent_dim=2)


def test_validation_split_and_best_weights(tmp_path) -> None:
    data = _data()
    model = _model(data)
    result = varfam.train(model, data, epochs=4, validation=100, out=tmp_path, lr=3e-3,
                          precision="fp32")
    hist = result.history
    assert all("validation_elbo" in r for r in hist)
    best = max(hist, key=lambda r: r["validation_elbo"])
    assert hist[-1]["best_epoch"] == best["epoch"]
    # the returned model and model.safetensors hold the best-validation weights
    saved = load_model(tmp_path)
    for (k, a), b in zip(model.state_dict().items(), saved.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    # 300 examples trained on: 3 batches of 128 per epoch (the last one partial)
    assert hist[0]["step"] == math.ceil(300 / 128)


def test_patience_stops_early(tmp_path) -> None:
    data = _data()
    model = _model(data)
    # a learning rate of ~0 never improves on epoch 1 by much; patience 1 stops at epoch 2 or 3
    result = varfam.train(model, data, epochs=20, validation=100, patience=1, lr=1e-9,
                          precision="fp32")
    assert len(result.history) < 20
    last = result.history[-1]
    assert last["epoch"] - last["best_epoch"] >= 1


def test_time_limit_stops_after_the_epoch(tmp_path) -> None:
    data = _data()
    result = varfam.train(_model(data), data, epochs=50, time_limit=1e-6, out=tmp_path)
    assert len(result.history) == 1
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["elapsed"] > 0


def test_eval_every_scores_every_nth_epoch_and_the_last(tmp_path) -> None:
    data = _data()
    model = _model(data)
    result = varfam.train(model, data, epochs=5, eval_every=2, validation=100, out=tmp_path,
                          lr=3e-3, precision="fp32")
    hist = result.history
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4, 5]  # every epoch logs its training
    scored = [r for r in hist if "test_elbo" in r]
    assert [r["epoch"] for r in scored] == [2, 4, 5]
    assert all("validation_elbo" in r for r in scored)
    assert all("validation_elbo" not in r and r["train_loss"] > 0 for r in hist if r not in scored)
    best = max(scored, key=lambda r: r["validation_elbo"])
    assert all(r["best_epoch"] in (0, 2, 4, 5) for r in hist)
    assert hist[-1]["best_epoch"] == best["epoch"]
    saved = load_model(tmp_path)  # the best of the scored epochs
    for (k, a), b in zip(model.state_dict().items(), saved.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    # the report and compare read runs whose epochs are not all scored
    from varfam.reporting.page import run_summary, write_report

    assert write_report(tmp_path, data=data, iw=5, limit=50).is_file()
    assert run_summary(tmp_path)["test_elbo"] == hist[-1]["test_elbo"]


def test_eval_every_still_scores_the_epoch_that_hits_the_time_limit(tmp_path) -> None:
    data = _data()
    result = varfam.train(_model(data), data, epochs=50, eval_every=10, time_limit=1e-6,
                          validation=100)
    assert len(result.history) == 1 and "validation_elbo" in result.history[0]
    assert result.history[0]["best_epoch"] == 1


def test_cosine_schedule_decays_to_final_ratio() -> None:
    data = _data(200)
    result = varfam.train(_model(data), data, epochs=5, lr=1e-2, lr_schedule="cosine",
                          lr_final_ratio=0.1)
    lrs = [r["lr"] for r in result.history]
    expected = [1e-2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * e / 5))) for e in range(5)]
    assert lrs == pytest.approx(expected)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_bad_schedule_options() -> None:
    data = _data(200)
    with pytest.raises(varfam.VarfamError, match="needs a validation set"):
        varfam.train(_model(data), data, epochs=1, patience=2)
    with pytest.raises(varfam.VarfamError, match="too few training examples"):
        varfam.train(_model(data), data, epochs=1, validation=10_000)
    with pytest.raises(varfam.VarfamError, match="lr_schedule"):
        varfam.train(_model(data), data, epochs=1, lr_schedule="step")
