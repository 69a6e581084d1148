"""One API, two shells: ``varfam train --config run.toml`` is one call of
:func:`varfam.train_from_config`, with the same names and the same weights, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import varfam
from varfam.cli.app import build_parser, main
from varfam.cli.train import SECTIONS, config_flags
from varfam.config import RunConfig

TOML = """
[model]
hidden = [16]
latent_dim = 2

[data]
source = "digits"
limit = 240
{extra}
[train]
epochs = 2
batch_size = 64
seed = 5
"""


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


@pytest.mark.parametrize("extra", ["", "labelled = 30\n"], ids=["limit", "labelled"])
def test_the_cli_and_python_train_the_same_weights(tmp_path: Path, extra: str) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text(TOML.format(extra=extra))
    assert main(["train", "--config", str(toml), "--out", str(tmp_path / "cli"), "--quiet",
                 "--no-report"]) == 0
    result = varfam.train_from_config(RunConfig.from_toml(toml), out=tmp_path / "python")
    cli, py = _weights(tmp_path / "cli"), _weights(tmp_path / "python")
    assert cli.keys() == py.keys() and all(torch.equal(cli[k], py[k]) for k in cli)
    saved = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert saved == json.loads((tmp_path / "python" / "config.json").read_text())
    assert saved["data"]["source"] == "digits" and saved["data"]["limit"] == 240
    assert result.model.data_shape == (1, 8, 8)
    if extra:  # the labels were kept as the data says: M2 with a classifier
        assert saved["data"]["labelled"] == 30 and saved["model"]["classifier"]
        assert "test_accuracy" in result.history[-1]


def test_a_python_run_records_the_data_it_trained_on(tmp_path: Path) -> None:
    data = varfam.load_data(varfam.DataConfig(source="digits", limit=120))
    model = varfam.VAE.for_data(data, hidden=(8,), latent_dim=2)
    varfam.train(model, data, epochs=1, out=tmp_path)
    saved = RunConfig.read(tmp_path / "config.json")
    assert saved.data.source == "digits" and saved.data.limit == 120
    from varfam.runs.folder import run_dataset  # and the run reads the same rows back

    again = run_dataset(saved)
    assert torch.equal(again.train, data.train) and torch.equal(again.test, data.test)


def test_data_settings_are_refused_by_train_not_recorded() -> None:
    data = varfam.load_dataset("digits").limit(50)
    model = varfam.VAE.for_data(data, hidden=(8,), latent_dim=2)
    for key in ("labelled", "limit", "mask", "label_column", "source"):
        with pytest.raises(varfam.VarfamError, match="describes the data"):
            varfam.train(model, data, **{key: 1})
    with pytest.raises(varfam.VarfamError, match="unknown training option 'epoch'"):
        varfam.train(model, data, epoch=1)


@pytest.mark.parametrize("wrong", ["table", "tensor"])
def test_train_names_the_right_call_for_other_inputs(wrong: str) -> None:
    model = varfam.VAE.build(data_shape=(1, 8, 8), hidden=(8,), latent_dim=2)
    value = torch.rand(10, 1, 8, 8) if wrong == "tensor" else type("Table", (), {})()
    with pytest.raises(varfam.VarfamError, match="train takes a varfam.Dataset"):
        varfam.train(model, value)


def test_every_config_field_the_cli_sets_is_a_flag_with_the_field_help() -> None:
    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items()
                 if a[0] == "train")[1]
    dests = {a.dest: a for a in train._actions}
    for _, cls in SECTIONS:
        for f in config_flags(cls):
            assert f.name in dests, f.name
            assert dests[f.name].help == f.metadata["help"]
            if f.metadata.get("choices"):
                assert tuple(dests[f.name].choices) == f.metadata["choices"]
    assert "--data" in dests["source"].option_strings  # the flags users know keep their names
    assert "--key" in dests["key"].option_strings


def test_old_config_files_are_read_into_the_data_section(tmp_path: Path) -> None:
    toml = tmp_path / "old.toml"
    toml.write_text('[train]\ndata = "digits"\nlimit = 100\nepochs = 2\n')
    with pytest.warns(DeprecationWarning, match=r"\[data\] section"):
        cfg = RunConfig.from_toml(toml)
    assert (cfg.data.source, cfg.data.limit, cfg.train.epochs) == ("digits", 100, 2)
    old_json = {"model": {}, "train": {"data": "digits", "data_key": "x", "epochs": 3}}
    cfg = RunConfig.from_dict(old_json)
    assert (cfg.data.source, cfg.data.key, cfg.train.epochs) == ("digits", "x", 3)
    with pytest.raises(varfam.VarfamError, match="both"):
        RunConfig.from_dict({"train": {"data": "a"}, "data": {"source": "b"}})
