"""`varfam sample --sampler` and `varfam eval --samples` end to end on a digits run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import varfam.evaluation.features as features
from varfam.cli import main
from varfam.model import VAE
from varfam.runs import save_model


def run_cli(capsys: pytest.CaptureFixture, *argv: object) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(capsys: pytest.CaptureFixture, *argv: object) -> str:
    code, _, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and lines and "Traceback" not in err
    assert lines[-1].startswith("varfam")
    return lines[-1]


@pytest.fixture
def run(digits_run: Path, tmp_path: Path) -> Path:
    """A copy of the session's digits run, so samplers written here stay in this test."""
    return Path(shutil.copytree(digits_run, tmp_path / "run"))


def test_sample_with_a_fitted_sampler(capsys, run: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(capsys, "sample", run, "--sampler", "gmm", "-n", "16",
                             "-o", tmp_path / "s.npy")
    assert code == 0 and "fitted gmm:" in err and "(BIC over 1, 2, 5, 10, 20, 40)" in err
    assert (run / "samplers" / "gmm.safetensors").exists()
    assert (run / "samplers" / "gmm.json").exists()
    first = np.load(tmp_path / "s.npy")
    assert first.shape == (16, 1, 8, 8)
    # the second time it is read back from the run folder: the same draws for the same seed
    code, _, err = run_cli(capsys, "sample", run, "--sampler", "gmm", "-n", "16",
                           "-o", tmp_path / "again.npy")
    assert code == 0 and "fitted" not in err
    assert np.array_equal(np.load(tmp_path / "again.npy"), first)
    code, _, err = run_cli(capsys, "sample", run, "--sampler", "gmm", "--refit", "-n", "16",
                           "-o", tmp_path / "s.png")
    assert code == 0 and "fitted gmm:" in err and (tmp_path / "s.png").exists()
    # the prior stays the default, and writes nothing
    code, _, _ = run_cli(capsys, "sample", run, "-n", "4", "-o", tmp_path / "p.npy")
    assert code == 0 and sorted(p.name for p in (run / "samplers").iterdir()) == [
        "gmm.json", "gmm.safetensors"]


def test_eval_samples_prints_and_records(capsys, run: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARFAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(features, "STEPS", 40)  # a quick feature network
    code, out, _ = run_cli(capsys, "eval", run, "--samples", "120", "--sampler", "gmm")
    assert code == 0, out
    assert "test vs train (floor)" in out and "gmm: " in out and "Inception" in out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    mine = [r for r in records if r.get("source") == "samples"]
    assert [r["sampler"] for r in mine] == ["floor", "gmm"]
    assert mine[1]["n"] == 120 and mine[0]["n"] == 300  # digits' test set
    assert {"fd", "kid", "precision", "recall"} <= set(mine[1])
    assert 0 <= mine[1]["precision"] <= 1 and mine[1]["fd"] > mine[0]["fd"]
    assert len(list((tmp_path / "cache" / "features").glob("*.safetensors"))) == 1
    code, out, _ = run_cli(capsys, "eval", run, "--samples", "50", "--sampler", "prior",
                           "--json", "--no-record")
    assert code == 0 and set(json.loads(out)) == {"run", "features", "floor", "prior"}


def test_bad_input_ends_in_one_line(capsys, run: Path, tmp_path: Path) -> None:
    assert "did you mean 'gmm'" in one_line_error(
        capsys, "sample", run, "--sampler", "gmn", "-o", tmp_path / "s.png")
    assert "-n" in one_line_error(capsys, "sample", run, "--sampler", "gmm", "-n", "0",
                                  "-o", tmp_path / "s.png")
    assert "--samples" in one_line_error(capsys, "eval", run, "--samples", "0")
    assert "unknown sampler" in one_line_error(capsys, "eval", run, "--samples", "10",
                                               "--sampler", "nope")
    run_cli(capsys, "sample", run, "--sampler", "gmm", "-n", "2", "-o", tmp_path / "s.npy")
    (run / "samplers" / "gmm.safetensors").write_bytes(b"\x00" * 40)
    assert "refit" in one_line_error(capsys, "sample", run, "--sampler", "gmm",
                                     "-o", tmp_path / "s.png")


def test_a_family_off_r_d_is_refused_in_one_line(capsys, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = VAE.build(data_shape=(1, 8, 8), latent_dim=3, hidden=(16,), family="vmf")
    save_model(model, tmp_path / "vmf")
    message = one_line_error(capsys, "sample", tmp_path / "vmf", "--sampler", "flow",
                             "-o", tmp_path / "s.png")
    assert "family 'vmf'" in message and "--sampler prior" in message
