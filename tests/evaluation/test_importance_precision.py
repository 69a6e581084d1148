"""Importance sampling with the decoder in bf16 (issue 26): the same draws as fp32, estimates
that move only by the decoder's rounding, fp32 by default, and the option applied (or
refused) the same way from Python and from the command line."""

from __future__ import annotations

import json

import pytest
import torch

from varfam.cli import main
from varfam.errors import VarfamError
from varfam.evaluation.bounds import evaluate, importance_sampling
from varfam.evaluation.importance import block_sizes, weighed_draws


@pytest.fixture(scope="module")
def trained(digits):
    import varfam

    torch.manual_seed(0)
    model = varfam.VAE.for_data(digits, hidden=(64,), latent_dim=4)
    varfam.train(model, digits, epochs=3, seed=0)
    return model.eval()


def test_bf16_decoding_keeps_the_draws_and_moves_only_log_p_x_given_z(trained, digits) -> None:
    x = digits.test[:20]
    rows, samples = block_sizes(trained, len(x), 8, memory_mb=8.0)
    out = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(5)
        with torch.inference_mode():
            out[precision] = list(weighed_draws(trained, x, 8, rows=rows, samples=samples,
                                                precision=precision))
    for a, b in zip(out["fp32"], out["bf16"], strict=True):
        assert torch.equal(a.z, b.z)  # the encoder and the draws stay in fp32
        assert not torch.equal(a.log_w, b.log_w)  # the decoder did run in bf16
        # bf16 keeps 8 bits of mantissa: the decoder's logits move by about 1 %, and
        # log p(x|z) of 64 pixels by well under a nat per draw here
        assert (a.log_w - b.log_w).abs().max() < 2.0


def test_the_bf16_estimate_is_close_to_fp32_and_fp32_is_the_default(trained, digits) -> None:
    x = digits.test
    default = importance_sampling(trained, x, 64, seed=1)
    fp32 = importance_sampling(trained, x, 64, seed=1, precision="fp32")
    bf16 = importance_sampling(trained, x, 64, seed=1, precision="bf16")
    assert torch.equal(default.log_likelihood, fp32.log_likelihood)
    diff = bf16.log_likelihood - fp32.log_likelihood
    assert float(diff.abs().max()) > 0
    assert abs(float(diff.mean())) < 0.5, float(diff.mean())


def test_an_unknown_precision_is_refused(trained, digits) -> None:
    with pytest.raises(VarfamError, match="fp32, bf16"):
        importance_sampling(trained, digits.test, 4, precision="fp16")
    with pytest.raises(VarfamError, match="fp32, bf16"):
        evaluate(trained, digits.test, iw=4, iw_precision="half")


def test_evaluate_records_the_precision_it_used(trained, digits) -> None:
    kw = dict(iw=16, labels=digits.test_labels, train=digits.train[:200],
              train_labels=digits.train_labels[:200], mi_examples=20)
    fp32 = evaluate(trained, digits.test, **kw)
    bf16 = evaluate(trained, digits.test, iw_precision="bf16", **kw)
    assert fp32["log_likelihood_precision"] == "fp32"
    assert bf16["log_likelihood_precision"] == "bf16"
    assert fp32["elbo"] == bf16["elbo"]  # only importance sampling changes precision
    assert abs(fp32["log_likelihood"] - bf16["log_likelihood"]) < 0.5
    skipped = evaluate(trained, digits.test, iw=0, mi_examples=20)
    assert skipped["log_likelihood_precision"] is None


def test_the_command_line_applies_the_precision(digits_run, capsys) -> None:
    results = {}
    for flag in ([], ["--iw-precision", "bf16"]):
        capsys.readouterr()
        assert main(["eval", str(digits_run), "--iw", "16", "--json", "--no-record", *flag]) == 0
        results[tuple(flag)] = json.loads(capsys.readouterr().out)
    assert results[()]["log_likelihood_precision"] == "fp32"
    bf16 = results[("--iw-precision", "bf16")]
    assert bf16["log_likelihood_precision"] == "bf16"
    assert bf16["log_likelihood"] != results[()]["log_likelihood"]
    assert abs(bf16["log_likelihood"] - results[()]["log_likelihood"]) < 0.5
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(digits_run), "--iw-precision", "fp16"])
    assert exit_info.value.code == 2
