"""Defaults that work without flags: the training settings a user leaves unset are chosen
from the data (:mod:`varfam.training.defaults`), explicit ones win, and the run records
the values chosen (``config.json``, which ``--resume`` reads back)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import varfam
from varfam.cli.app import build_parser
from varfam.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from varfam.data import Dataset, TableDataset
from varfam.runs.checkpoint import load_run_config
from varfam.training import loop as loop_module
from varfam.training.defaults import TABLE_STEPS, resolved

CHOSEN = ("objective", "epochs", "batch_size", "validation", "patience")
IMAGE_DEFAULTS = TrainConfig(objective="elbo", epochs=30, batch_size=128, validation=0,
                             chosen_from_data=["batch_size", "epochs", "objective",
                                               "validation"])


def _csv(path: Path, rows: int = 300, label: bool = False) -> Path:
    rng = np.random.default_rng(0)
    z = rng.normal(size=rows)
    frame = pd.DataFrame({"height": 170 + 10 * z + rng.normal(size=rows),
                          "visits": rng.poisson(np.exp(1 + 0.3 * z)),
                          "colour": np.where(z + rng.normal(size=rows) > 0, "red", "blue")})
    frame = frame.mask(rng.random(frame.shape) < 0.2)
    if label:
        frame["label"] = np.where(z > 0, "hi", "lo")
    frame.to_csv(path, index=False)
    return path


def _steps(cfg: TrainConfig, rows: int) -> int:
    assert cfg.epochs is not None and cfg.batch_size is not None and cfg.validation is not None
    return cfg.epochs * math.ceil((rows - cfg.validation) / cfg.batch_size)


def _big_table(rows: int) -> TableDataset:
    return TableDataset("big", torch.zeros(rows, 2), torch.zeros(10, 2))


# ---------------------------------------------------------------- per kind of data
def test_images_and_vectors_keep_todays_defaults() -> None:
    digits = varfam.load_dataset("digits")
    vectors = Dataset("vectors", torch.rand(300, 5), torch.rand(30, 5))
    for data in (digits, vectors):
        cfg = resolved(TrainConfig(), data)
        assert cfg == IMAGE_DEFAULTS and cfg.patience is None and cfg.objective_options == {}


def test_a_table_gets_the_miwae_recipe(tmp_path: Path) -> None:
    data = varfam.load_data(str(_csv(tmp_path / "t.csv")))
    rows = data.train.shape[0]  # 270: the fixed 90 % training split
    cfg = resolved(TrainConfig(), data)
    assert cfg.objective == "iwae" and cfg.objective_options == {"k": 20, "estimator": "dreg"}
    assert cfg.batch_size == 64 and cfg.validation == round(0.1 * rows)
    assert abs(_steps(cfg, rows) - TABLE_STEPS) <= TABLE_STEPS * 0.1
    assert cfg.patience is not None and 2 <= cfg.patience < cfg.epochs


@pytest.mark.parametrize("rows", [300, 30_000, 1_000_000])
def test_the_step_budget_suits_a_few_hundred_rows_and_a_million(rows: int) -> None:
    cfg = resolved(TrainConfig(), _big_table(rows))
    assert 0.8 * TABLE_STEPS <= _steps(cfg, rows) <= 1.5 * TABLE_STEPS
    assert 0 < cfg.validation <= 10_000  # type: ignore[operator]
    assert cfg.batch_size == (64 if rows < 20_000 else 128 if rows < 50_000 else 512)


def test_a_tiny_table_trains_without_a_validation_split() -> None:
    cfg = resolved(TrainConfig(), _big_table(30))
    assert cfg.validation == 0 and cfg.patience is None and cfg.epochs == 1000


# ---------------------------------------------------------------- explicit settings win
def test_explicit_settings_win(tmp_path: Path) -> None:
    table = varfam.load_data(str(_csv(tmp_path / "t.csv")))
    given = TrainConfig(objective="elbo", epochs=3, batch_size=32, validation=0)
    assert resolved(given, table) == given
    cfg = resolved(TrainConfig(objective_options={"k": 5}), table)
    assert cfg.objective == "iwae" and cfg.objective_options == {"k": 5, "estimator": "dreg"}
    cfg = resolved(TrainConfig(objective="elbo"), table)  # no IWAE options for the ELBO
    assert cfg.objective_options == {} and cfg.batch_size == 64
    assert resolved(TrainConfig(validation=0), table).patience is None  # no early stopping
    cfg = resolved(TrainConfig(patience=0), table)  # 0: never stop early
    assert cfg.patience == 0 and cfg.validation and cfg.validation > 0
    assert resolved(TrainConfig(validation=50, patience=4), table).patience == 4
    # images: a validation split is never implied
    digits = varfam.load_dataset("digits")
    assert resolved(TrainConfig(validation=100), digits).patience is None
    with pytest.raises(varfam.VarfamError, match="needs a validation set"):
        resolved(TrainConfig(patience=3), digits)
    for name in CHOSEN:  # every resolved setting is a plain value, none left unset
        assert getattr(resolved(TrainConfig(), table), name) is not None


def test_patience_zero_never_stops_early() -> None:
    data = Dataset("vectors", torch.rand(200, 4).round(), torch.rand(20, 4).round())
    model = varfam.VAE.for_data(data, hidden=(8,), latent_dim=2)
    result = varfam.train(model, data, epochs=4, validation=40, patience=0, lr=1e-9)
    assert len(result.history) == 4


# ---------------------------------------------------------------- recorded, resumed
def test_the_values_chosen_are_recorded_and_resume_keeps_them(tmp_path: Path) -> None:
    csv = _csv(tmp_path / "t.csv", rows=150)
    cfg = RunConfig(data=DataConfig(source=str(csv)),
                    model=ModelConfig(hidden=(16,), latent_dim=2), train=TrainConfig(epochs=3))
    straight = varfam.train_from_config(cfg, out=tmp_path / "straight")
    saved = json.loads((tmp_path / "straight" / "config.json").read_text())["train"]
    chosen = resolved(TrainConfig(epochs=3), varfam.load_data(str(csv)))
    assert {k: saved[k] for k in CHOSEN} == {k: getattr(chosen, k) for k in CHOSEN}
    assert saved["objective"] == "iwae" and saved["objective_options"] == {"k": 20,
                                                                         "estimator": "dreg"}
    assert saved["validation"] > 0 and saved["patience"] > 0 and saved["epochs"] == 3
    history = straight.history
    assert all("validation_iwae" in r for r in history)  # chosen on the bound it trains
    best = max(history, key=lambda r: r["validation_iwae"])
    assert straight.state.best_epoch == best["epoch"]

    # two epochs, then resumed for a third: the same settings and the same weights
    varfam.train_from_config(dataclasses.replace(cfg, train=TrainConfig(epochs=2)),
                             out=tmp_path / "resumed")
    again = load_run_config(tmp_path / "resumed")
    assert {k: getattr(again.train, k) for k in CHOSEN if k != "epochs"} == \
        {k: saved[k] for k in CHOSEN if k != "epochs"}
    again.train.epochs = 3
    varfam.train_from_config(again, out=tmp_path / "resumed", resume=True)
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_labels_kept_for_m2_lie_outside_the_validation_rows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv = _csv(tmp_path / "t.csv", rows=150, label=True)
    calls: list[int] = []
    load = loop_module.load_data

    def spy(*args: object, **kwargs: object) -> Dataset:
        calls.append(int(kwargs["validation"]))  # type: ignore[call-overload]
        return load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop_module, "load_data", spy)
    cfg = RunConfig(data=DataConfig(source=str(csv), label_column="label", labelled=20),
                    model=ModelConfig(hidden=(16,), latent_dim=2), train=TrainConfig(epochs=1))
    varfam.train_from_config(cfg, out=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert saved["validation"] > 0 and calls[-1] == saved["validation"]


# ---------------------------------------------------------------- images unchanged
def test_image_weights_are_those_of_the_explicit_old_defaults(tmp_path: Path) -> None:
    data = varfam.load_dataset("digits").limit(300)

    def weights(**settings: object) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = varfam.VAE.for_data(data, hidden=(16,), latent_dim=2)
        return varfam.train(model, data, epochs=1, seed=0, **settings).model.state_dict()

    unset = weights()
    given = weights(objective="elbo", batch_size=128, validation=0)
    assert all(torch.equal(unset[k], given[k]) for k in unset)
    torch.manual_seed(0)
    model = varfam.VAE.for_data(data, hidden=(16,), latent_dim=2)
    varfam.train(model, data, epochs=1, out=tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert (saved["objective"], saved["batch_size"], saved["validation"], saved["patience"],
            saved["objective_options"]) == ("elbo", 128, 0, None, {})


def test_the_help_says_which_defaults_come_from_the_data() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in sub.choices["train"]._actions}
    for name in CHOSEN:
        assert "default from the data" in helps[name] and "table" in helps[name], name
