"""Images with missing pixels: the masked likelihood scores observed pixels only, the encoder
sees the mask, and `varfam train --mask` trains on partial images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from varfam.cli import main
from varfam.data.masks import hide
from varfam.likelihoods.masked import MaskedLikelihood
from varfam.nets import MaskedInput, mlp
from varfam.registry import LIKELIHOODS

NAN = float("nan")


@pytest.mark.parametrize(("base", "options"), [("bernoulli", {}), ("gaussian", {}),
                                               ("continuous-bernoulli", {}), ("laplace", {})])
def test_masked_likelihood_is_the_sum_over_observed_pixels(base: str, options: dict) -> None:
    shape = (1, 3, 2)
    lik = MaskedLikelihood(shape, base=base, options=options).double()
    plain = LIKELIHOODS.build(base, shape, options=options).double()
    g = torch.Generator().manual_seed(0)
    params = torch.randn(4, lik.params_per_value, *shape, generator=g, dtype=torch.float64,
                         requires_grad=True)
    x = torch.rand(4, *shape, generator=g, dtype=torch.float64)
    hidden = torch.rand(4, *shape, generator=g) < 0.4
    lp = lik(params).log_prob(x.masked_fill(hidden, NAN))
    lp.sum().backward()
    grad, params.grad = params.grad, None
    px = plain(params)
    per_pixel = px.base_dist.log_prob(x)
    reference = (per_pixel * ~hidden).sum((1, 2, 3))
    reference.sum().backward()
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(lp, reference)
    torch.testing.assert_close(grad, params.grad)
    lik.check_data(x.masked_fill(hidden, NAN))  # NaN is missing, not an error


def test_masked_encoder_sees_zero_filled_values_and_the_mask() -> None:
    enc, _ = mlp((1, 2, 2), (8,), 2, 1, masked=True)
    assert isinstance(enc, MaskedInput)
    x = torch.tensor([[[[0.5, NAN], [1.0, 0.0]]]], requires_grad=True)
    h = enc(x)
    assert torch.isfinite(h).all()
    h.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_hide_one_mask_per_example_and_one_for_all() -> None:
    from varfam.data.base import split

    ds = split(torch.rand(6, 1, 2, 2), None, 2, 0, "toy")
    per = torch.zeros(6, 1, 2, 2, dtype=torch.bool)
    per[ds.train_index[0], 0, 1, 1] = True
    hidden = hide(ds, per)
    assert hidden.train[0, 0, 1, 1].isnan() and int(hidden.train.isnan().sum()) == 1
    assert not hidden.test.isnan().any()
    with pytest.raises(Exception, match="fits neither"):
        hide(ds, torch.zeros(5, dtype=torch.bool))


def test_train_with_a_mask_and_with_nan_pixels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "m.npy", rng.random((8, 8)) < 0.3)  # the same pixels of every digit
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--mask", str(tmp_path / "m.npy"), "--limit", "200",
                 "--epochs", "1", "--hidden", "16", "--latent-dim", "2", "--out", str(out),
                 "--quiet", "--no-report"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["likelihood"] == "masked"
    assert cfg["model"]["likelihood_options"] == {"base": "bernoulli", "options": {}}
    assert cfg["model"]["arch_options"] == {"masked": True}
    assert main(["eval", str(out), "--iw", "5", "--no-record"]) == 0
    images = rng.random((60, 1, 6, 6))
    images[rng.random(images.shape) < 0.2] = np.nan
    np.save(tmp_path / "x.npy", images)
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--epochs", "1", "--hidden", "8",
                 "--out", str(tmp_path / "r2"), "--quiet", "--no-report"]) == 2
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--mask", "nan", "--epochs", "1",
                 "--hidden", "8", "--latent-dim", "2", "--out", str(tmp_path / "r3"),
                 "--quiet", "--no-report"]) == 0
