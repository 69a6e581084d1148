"""The page's configuration: what differs from the defaults, and the `varfam train` command
that trains the run again. Every command made is parsed by the real command line and
rebuilt into the same model, data and training settings the run recorded."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tomllib

from varfam.cli.app import build_parser
from varfam.cli.train import _train_config_from_args
from varfam.config import RunConfig
from varfam.data import load_data
from varfam.model import VAE
from varfam.reporting.configuration import (
    chosen_from_data,
    configuration_html,
    differences,
    reproduction,
    toml_text,
)
from varfam.runs.checkpoint import load_run_config
from varfam.training.defaults import resolved


def _parse(argv: list[str]) -> RunConfig:
    """``varfam train ARGV``'s config, as the command line makes it."""
    return _train_config_from_args(build_parser().parse_args(["train", *argv]))


def _columns(cfg: RunConfig) -> list[Any] | None:
    m = cfg.model
    return m.likelihood_options.get("columns") if m.likelihood == "mixed" else None


def _trained(cfg: RunConfig) -> RunConfig:
    """What a run trained from ``cfg`` records: the model as the data fills it in, and the
    training settings left unset chosen from the data."""
    data = load_data(cfg.data, seed=cfg.train.seed, validation=cfg.train.validation or 0,
                     columns=_columns(cfg))
    return RunConfig(model=VAE.for_data(data, cfg.model).config, data=cfg.data,
                     train=resolved(cfg.train, data))


def _plain(value: Any) -> Any:
    """JSON-like, with None entries of dicts left out (TOML has no null) and tuples as lists."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _again(recorded: RunConfig, tmp_path: Path) -> RunConfig:
    """The config that the page's command (and its run.toml) gives, trained on the data."""
    r = reproduction(recorded)
    argv = shlex.split(r.command)
    assert argv[:2] == ["varfam", "train"]
    argv = argv[2:]
    if r.toml is not None:
        path = tmp_path / "run.toml"
        path.write_text(r.toml)
        argv = [str(path) if a == "run.toml" else a for a in argv]
        tomllib.loads(r.toml)  # valid TOML
    return _trained(_parse(argv))


def _same(a: RunConfig, b: RunConfig) -> None:
    assert _plain(a.data) == _plain(b.data)
    assert _plain(a.train) == _plain(b.train)
    assert _plain(a.model) == _plain(b.model)


def _table(path: Path) -> Path:
    rng = np.random.default_rng(0)
    z = rng.normal(size=120)
    pd.DataFrame({"height": 170 + 10 * z, "visits": rng.poisson(np.exp(1 + 0.3 * z)),
                  "colour": np.where(z > 0, "red", "blue"),
                  "label": np.where(z > 0.3, "hi", "lo")}).to_csv(path, index=False)
    return path


CASES = {
    "textbook": ["--data", "digits"],
    "parts and options": ["--data", "digits", "--family", "iaf", "--flow-steps", "2", "--beta",
                          "0.5", "--warmup-epochs", "1", "--hidden", "64,32", "--latent-dim",
                          "3", "--binarize", "dynamic", "--validation", "50", "--patience",
                          "3", "--compile", "--lr", "0.002", "--estimator", "dreg",
                          "--objective", "iwae", "--k", "4"],
    "conditioned on labels": ["--data", "digits", "--condition", "label", "--prior",
                              "conditional", "--limit", "300"],
    "semi-supervised": ["--data", "digits", "--labelled", "40", "--limit", "400", "--alpha",
                        "3"],
    "options as strings": ["--data", "digits", "--prior", "mog", "--prior-option",
                           "components=3", "--likelihood", "gaussian", "--likelihood-option",
                           "variance=global"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_command_trains_the_same_settings(case: str, tmp_path: Path) -> None:
    recorded = _trained(_parse(CASES[case]))
    again = reproduction(recorded)
    assert again.toml is None, again.command  # flags say it all
    _same(_again(recorded, tmp_path), recorded)


def test_a_mask_and_a_table_are_given_back_as_the_user_gave_them(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((60, 6, 6)).astype(np.float32)
    x[x < 0.05] = np.nan
    np.save(tmp_path / "holes.npy", x)
    masked = _trained(_parse(["--data", str(tmp_path / "holes.npy"), "--mask", "nan",
                              "--likelihood", "continuous-bernoulli"]))
    assert masked.model.likelihood == "masked"  # what the run records ...
    command = reproduction(masked).command
    assert "--likelihood continuous-bernoulli" in command and "masked" not in command
    _same(_again(masked, tmp_path), masked)  # ... and what the command gives again

    table = _trained(_parse(["--data", str(_table(tmp_path / "rows.csv")), "--label-column",
                             "label", "--latent-dim", "2"]))
    again = reproduction(table)
    assert again.command == "varfam train --config run.toml" and again.toml is not None
    toml = tomllib.loads(again.toml)
    assert [c["name"] for c in toml["model"]["likelihood_options"]["columns"]] == \
        ["height", "visits", "colour"]
    assert toml["data"]["label_column"] == "label" and toml["model"]["latent_dim"] == 2
    assert "data_shape" not in toml["model"]  # the data gives it
    _same(_again(table, tmp_path), table)


def test_a_trained_run_folder(picture_run: Path, tmp_path: Path) -> None:
    recorded = load_run_config(picture_run)
    command = reproduction(recorded).command
    assert command.startswith("varfam train --data digits ") and "--limit 600" in command
    _same(_again(recorded, tmp_path), recorded)


def test_settings_chosen_from_the_data_are_told_apart_from_those_set(tmp_path: Path) -> None:
    """A setting left unset is chosen from the data, recorded as such, shown apart and left
    to the data by the command; the same value given explicitly is the user's."""
    left = _trained(_parse(["--data", "digits"]))
    assert left.train.epochs == 30 and left.train.objective == "elbo"
    assert left.train.chosen_from_data == ["batch_size", "epochs", "objective", "validation"]
    assert chosen_from_data(left) == {
        "model.arch": "mlp", "model.likelihood": "bernoulli", "model.prior": "standard",
        "train.objective": "elbo", "train.epochs": 30, "train.batch_size": 128,
        "train.validation": 0}
    assert not [d for d in differences(left) if d.section == "train"]
    assert reproduction(left).command == "varfam train --data digits"
    page = configuration_html(left.to_dict(), left)
    assert "Chosen from the data" in page and "train.epochs" in page
    differ = page.split("Chosen from the data")[0]  # the table of what the user set
    assert "data.source" in differ and "train." not in differ and "model.arch" not in differ

    given = _trained(_parse(["--data", "digits", "--epochs", "30"]))
    assert "epochs" not in given.train.chosen_from_data
    assert reproduction(given).command == "varfam train --data digits --epochs 30"

    table = _trained(_parse(["--data", str(_table(tmp_path / "rows.csv")), "--k", "3"]))
    chosen = chosen_from_data(table)
    assert chosen["train.objective"] == "iwae"
    assert chosen["train.objective_options.estimator"] == "dreg"
    assert "train.objective_options.k" not in chosen  # given
    assert chosen["model.likelihood"] == "mixed" and chosen["model.arch"] == "tabular"
    options = {d.name: d.value for d in differences(table) if d.section == "train"}
    assert options == {"objective_options": {"k": 3}}
    _same(_again(table, tmp_path), table)

    # a run recorded before varfam kept track: its values count as set, as they did
    old = RunConfig.from_dict({
        section: {k: v for k, v in values.items() if k != "chosen_from_data"}
        if isinstance(values, dict) else values for section, values in left.to_dict().items()})
    assert chosen_from_data(old) == {}
    assert "--epochs 30" in reproduction(old).command
    # a family's natural prior and its options are chosen for the family
    gumbel = _trained(_parse(["--data", "digits", "--family", "gumbel"]))
    assert "model.prior" in chosen_from_data(gumbel)
    assert reproduction(gumbel).command == "varfam train --data digits --family gumbel"
    _same(_again(gumbel, tmp_path), gumbel)
    # resuming keeps the record (the settings are then all set)
    assert resolved(left.train, load_data(left.data, seed=0)).chosen_from_data == \
        left.train.chosen_from_data


def test_differences_and_the_section() -> None:
    cfg = RunConfig.from_dict({"data": {"source": "digits"},
                               "model": {"latent_dim": 2, "family_options": {"rank": 2}},
                               "train": {"epochs": 3}})
    found = {(d.section, d.name): (d.value, d.default) for d in differences(cfg)}
    assert found[("model", "latent_dim")] == (2, 20)
    assert found[("model", "family_options")] == ({"rank": 2}, {})
    assert ("train", "lr") not in found and ("train", "batch_size") not in found
    page = configuration_html(cfg.to_dict(), cfg)
    assert "What differs from the defaults" in page and 'id="train-command"' in page
    assert "--family-option rank=2" in page and "Every setting" in page
    assert "varfam train" not in configuration_html(cfg.to_dict(),
                                                    RunConfig.model_only(cfg.model))


def test_toml_text_reads_back() -> None:
    sections = {"model": {"hidden": [64, 32], "name": 'a "quoted" name', "off": False,
                          "nothing": None, "options": {"x y": 1.5, "n": -2},
                          "rows": [{"name": "a", "levels": ["u", "v"], "scale": None}]},
                "train": {"lr": 1e-3, "big": float("inf")}}
    back = tomllib.loads(toml_text(sections))
    assert back["model"]["hidden"] == [64, 32] and back["model"]["name"] == 'a "quoted" name'
    assert back["model"]["off"] is False and "nothing" not in back["model"]
    assert back["model"]["options"] == {"x y": 1.5, "n": -2}
    assert back["model"]["rows"] == [{"name": "a", "levels": ["u", "v"]}]
    assert back["train"] == {"lr": 1e-3, "big": float("inf")}
