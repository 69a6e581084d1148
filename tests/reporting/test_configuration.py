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
    configuration_html,
    differences,
    reproduction,
    toml_text,
)
from varfam.runs.checkpoint import load_run_config


def _parse(argv: list[str]) -> RunConfig:
    """``varfam train ARGV``'s config, as the command line makes it."""
    return _train_config_from_args(build_parser().parse_args(["train", *argv]))


def _columns(cfg: RunConfig) -> list[Any] | None:
    m = cfg.model
    return m.likelihood_options.get("columns") if m.likelihood == "mixed" else None


def _trained(cfg: RunConfig) -> RunConfig:
    """What a run trained from ``cfg`` records: the model as the data fills it in."""
    data = load_data(cfg.data, seed=cfg.train.seed, validation=cfg.train.validation or 0,
                     columns=_columns(cfg))
    return RunConfig(model=VAE.for_data(data, cfg.model).config, data=cfg.data, train=cfg.train)


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
