"""Every family composes with every prior, likelihood and objective: each combination
trains one epoch in process on 96 tiny images, every logged number is finite and the
family's parameters move.

``make test`` runs an all-pairs design: for every registered family, four combinations
of {the family's own prior, vamp} × {bernoulli, gaussian} × {elbo, iwae-dreg} that
together contain every pair of values. ``make test-all`` adds the whole product, with the
standard prior as a third prior (every family × 3 × 2 × 2). One combination goes through
the command line's flags as well.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

import varfam
from varfam.cli import main
from varfam.data import Dataset
from varfam.registry import FAMILIES

#: Options some families need for a 4-dimensional latent.
FAMILY_OPTIONS = {"gumbel": {"categories": 2}}
OBJECTIVES = {"elbo": {}, "iwae": {"k": 3, "estimator": "dreg"}}

#: Pairwise design over (prior, likelihood, objective): every pair of values appears.
PAIRWISE = [("own", "bernoulli", "elbo"), ("own", "gaussian", "iwae"),
            ("vamp", "bernoulli", "iwae"), ("vamp", "gaussian", "elbo")]
FULL = [c for c in itertools.product(("own", "standard", "vamp"), ("bernoulli", "gaussian"),
                                     ("elbo", "iwae")) if c not in PAIRWISE]


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 8, 8, generator=g)
    return Dataset("tiny", x[:64], x[64:])


def _trains(data: Dataset, family: str, prior: str, likelihood: str, objective: str) -> None:
    torch.manual_seed(0)
    prior_args = {} if prior == "own" else {"prior": prior}
    if prior == "vamp":
        prior_args["prior_options"] = {"components": 5}
    model = varfam.VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=4, family=family,
                             family_options=FAMILY_OPTIONS.get(family, {}),
                             likelihood=likelihood, **prior_args)
    before = [p.detach().clone() for p in model.family.parameters()]
    result = varfam.train(model, data, epochs=1, batch_size=32, objective=objective,
                          objective_options=OBJECTIVES[objective])
    (record,) = result.history
    for key in ("train_loss", "test_elbo", "test_reconstruction", "test_kl"):
        assert math.isfinite(record[key]), (key, record[key])
    assert all(torch.isfinite(p).all() for p in model.parameters())
    moved = [not torch.equal(a, b) for a, b in zip(before, model.family.parameters())]
    assert any(moved) or not moved, f"{family}: the family's parameters did not move"


@pytest.mark.parametrize(("prior", "likelihood", "objective"), PAIRWISE)
@pytest.mark.parametrize("family", FAMILIES.names())
def test_every_family_composes(tiny, family, prior, likelihood, objective) -> None:
    _trains(tiny, family, prior, likelihood, objective)


@pytest.mark.slow
@pytest.mark.parametrize(("prior", "likelihood", "objective"), FULL)
@pytest.mark.parametrize("family", FAMILIES.names())
def test_every_family_composes_in_every_combination(tiny, family, prior, likelihood,
                                                    objective) -> None:
    _trains(tiny, family, prior, likelihood, objective)


def test_the_command_line_composes_parts_from_flags(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data", "digits", "--limit", "64", "--epochs", "1", "--batch-size", "32",
            "--hidden", "16", "--latent-dim", "4", "--family", "gumbel", "--family-option",
            "categories=2", "--prior", "vamp", "--prior-option", "components=5",
            "--likelihood", "gaussian", "--objective", "iwae", "--k", "3", "--estimator", "dreg",
            "--out", str(out), "--quiet", "--no-report"]
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["family_options"] == {"categories": 2}
    assert cfg["model"]["prior_options"] == {"components": 5}
    assert cfg["train"]["objective_options"] == {"k": 3, "estimator": "dreg"}
    (record,) = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()
                 if '"kind"' not in s]
    assert math.isfinite(record["test_elbo"])
