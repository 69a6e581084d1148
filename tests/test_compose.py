"""Every family composes with every prior, likelihood and objective: the CLI trains each
combination of {every family} × {standard, vamp} × {bernoulli, gaussian} × {elbo, iwae}
for a few steps on `digits` and every logged number is finite."""

from __future__ import annotations

import json
import math

import pytest

from varfam.cli import main
from varfam.registry import FAMILIES

#: Options some families need for a 4-dimensional latent.
FAMILY_ARGS = {"gumbel": ["--family-option", "categories=2"]}


@pytest.mark.parametrize("objective", ["elbo", "iwae"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("prior", ["standard", "vamp"])
@pytest.mark.parametrize("family", FAMILIES.names())
def test_family_prior_likelihood_objective(tmp_path, family, prior, likelihood, objective):
    out = tmp_path / "run"
    argv = [
        "train", "--data", "digits", "--limit", "64", "--epochs", "1", "--batch-size", "32",
        "--hidden", "16", "--latent-dim", "4", "--family", family, "--prior", prior,
        "--likelihood", likelihood, "--objective", objective, "--out", str(out), "--quiet",
        "--no-report", *FAMILY_ARGS.get(family, []),
    ]
    if prior == "vamp":
        argv += ["--prior-option", "components=5"]
    if objective == "iwae":
        argv += ["--k", "3", "--estimator", "dreg"]
    assert main(argv) == 0
    (record,) = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_loss", "test_elbo", "test_reconstruction", "test_kl"):
        assert math.isfinite(record[key]), (key, record[key])
