"""The moving average of the weights (``ema``): its arithmetic, and training with it —
evaluated and saved weights, best-validation choice, exact resume, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from _models import small_vae
from varfam import VAE, VarfamError, train
from varfam.cli import main as cli_main
from varfam.config import TrainConfig
from varfam.data import Dataset
from varfam.evaluation.bounds import evaluate_elbo
from varfam.families.discrete import RelaxedBernoulliFamily
from varfam.runs.checkpoint import CHECKPOINT, load_checkpoint, load_model
from varfam.training.averaging import WeightAverage
from varfam.training.batches import BatchSource

FAST = dict(precision="fp32", batch_size=128, seed=3)


def _model() -> VAE:
    return small_vae(7)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_average_is_the_exponential_moving_average_of_the_iterates() -> None:
    model = _model()
    decay = 0.9
    average = WeightAverage(model, decay)
    params = list(model.parameters())
    expected = None
    for t in range(5):
        with torch.no_grad():
            for p in params:
                p.add_(torch.randn_like(p))
        average.update(model)
        now = [p.detach().clone() for p in params]
        # the first update copies the weights; each later one moves 1 − decay of the way
        expected = now if expected is None else [
            decay * e + (1 - decay) * w for e, w in zip(expected, now, strict=True)
        ]
        assert average.steps == t + 1
    for e, a in zip(expected, average.model(model).parameters(), strict=True):
        torch.testing.assert_close(a, e)
    # the training model is untouched
    assert not torch.equal(next(average.model(model).parameters()), params[0])


def test_before_any_update_the_average_is_the_model() -> None:
    model = _model()
    average = WeightAverage(model, 0.99)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    for a, b in zip(average.model(model).parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_buffers_are_the_training_models_not_averaged() -> None:
    torch.manual_seed(0)
    model = VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=4, family="bernoulli",
                      prior="categorical")
    assert isinstance(model.family, RelaxedBernoulliFamily)
    average = WeightAverage(model, 0.5)
    average.update(model)
    model.family.temperature.fill_(0.123)  # annealed after the update
    assert float(average.model(model).family.temperature) == pytest.approx(0.123)


def test_a_decay_outside_the_open_unit_interval_is_refused() -> None:
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError):
            WeightAverage(_model(), bad)
        with pytest.raises(VarfamError, match="ema must be a decay in"):
            TrainConfig(ema=bad)


def test_training_with_ema_evaluates_and_saves_the_average(
    digits: Dataset, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    result = train(_model(), digits, epochs=2, ema=0.9, out=run, **FAST)
    saved = load_model(run)
    # the returned model, model.safetensors and the logged test ELBO are the average's
    for (k, a), b in zip(result.model.state_dict().items(), saved.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    # (the KL of this diagonal family to the standard prior is in closed form: no noise)
    test_x = BatchSource(digits.test, torch.device("cpu")).whole()
    logged_kl = result.history[-1]["test_kl"]
    assert evaluate_elbo(saved, test_x)["kl"] == pytest.approx(logged_kl, rel=1e-6)
    # the checkpoint keeps the raw weights, which differ from the average, and the average
    raw = _model()
    average = WeightAverage(raw, 0.9)
    load_checkpoint(run / CHECKPOINT, raw, average=average)
    assert average.steps == 2 * 5
    assert evaluate_elbo(raw, test_x)["kl"] != pytest.approx(logged_kl, rel=1e-3)
    for a, b in zip(average.model(raw).parameters(), saved.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_average_differs_from_the_raw_weights_and_is_chosen_on_validation(
    digits: Dataset, tmp_path: Path
) -> None:
    plain = train(_model(), digits, epochs=2, validation=100, **FAST)
    averaged = train(_model(), digits, epochs=2, validation=100, ema=0.5, **FAST)
    # same raw trajectory (same seed), so the losses agree; the evaluated weights do not
    assert [r["train_loss"] for r in plain.history] == [r["train_loss"] for r in averaged.history]
    assert plain.history[-1]["validation_elbo"] != averaged.history[-1]["validation_elbo"]
    best = max(averaged.history, key=lambda r: r["validation_elbo"])
    assert averaged.history[-1]["best_epoch"] == best["epoch"]


def test_resume_with_ema_is_exact(digits: Dataset, tmp_path: Path) -> None:
    full = train(_model(), digits, epochs=3, ema=0.8, out=tmp_path / "a", **FAST)
    train(_model(), digits, epochs=1, ema=0.8, out=tmp_path / "b", **FAST)
    resumed = train(_model(), digits, epochs=3, ema=0.8, out=tmp_path / "b", resume=True, **FAST)
    a, b = _weights(full.model), _weights(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history[-1]["test_elbo"] == full.history[-1]["test_elbo"]


def test_cli_ema_flag_reaches_the_run_config(tmp_path: Path) -> None:
    import json

    out = tmp_path / "run"
    rc = cli_main(["train", "--data", "digits", "--limit", "300", "--epochs", "1",
                   "--hidden", "16", "--latent-dim", "2", "--ema", "0.95", "--quiet",
                   "--no-report", "--out", str(out)])
    assert rc == 0
    assert json.loads((out / "config.json").read_text())["train"]["ema"] == 0.95
    assert cli_main(["train", "--data", "digits", "--ema", "1.5", "--out",
                     str(tmp_path / "bad")]) != 0
