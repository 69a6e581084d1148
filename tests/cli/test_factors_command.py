"""The command line on data with known factors: train a disentangling objective, ``varfam
eval RUN --factors``, ``varfam encode`` writing the factors; bad input ends in one line,
exit code 2, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from varfam.cli import main

N = 400


def _sprites(path: Path, n_factors: int | None = None) -> Path:
    """N binary 8x8 images of a 2x2 square at (row, col): the factors; their names."""
    rng = np.random.default_rng(0)
    f = rng.integers(0, 7, size=(N, 2))
    x = np.zeros((N, 8, 8), np.float32)
    for i, (r, c) in enumerate(f):
        x[i, r : r + 2, c : c + 2] = 1.0
    factors = f if n_factors is None else f[:n_factors]
    np.savez(path, x=x, factors=factors.astype(np.float32), factor_names=np.array(["row", "col"]))
    return path


def fails(capsys: pytest.CaptureFixture, *argv: object) -> str:
    """The CLI ending in exit code 2 with one line on stderr and no traceback: that line."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch β-TCVAE run on the little sprites."""
    root = tmp_path_factory.mktemp("factors")
    data = _sprites(root / "sprites.npz")
    out = root / "run"
    code = main(["train", "--data", str(data), "--epochs", "2", "--hidden", "32",
                 "--latent-dim", "3", "--objective", "betatc", "--beta", "6", "--batch-size",
                 "50", "--out", str(out), "--quiet", "--seed", "2"])
    assert code == 0
    return out


def _eval_lines(run: Path) -> list[dict]:
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r.get("source") == "factors"]


def test_eval_factors_scores_the_mean_codes_and_records_them(run: Path, capsys) -> None:
    before = len(_eval_lines(run))
    code = main(["eval", str(run), "--factors", "--factor-train", "200", "--factor-test", "100",
                 "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("mig", "mig_row", "mig_col", "dci_disentanglement", "dci_completeness",
                "dci_informativeness", "sap", "factor_vae_score"):
        assert 0.0 <= out[key] <= 1.0, key
    assert out["factor_rows"] == N and out["factor_names"] == ["row", "col"]
    lines = _eval_lines(run)
    assert len(lines) == before + 1
    assert lines[-1]["kind"] == "eval" and lines[-1]["mig"] == out["mig"]
    assert lines[-1]["factor_train"] == 200


def test_eval_factors_prints_a_table(run: Path, capsys) -> None:
    code = main(["eval", str(run), "--factors", "--factor-rows", "300", "--factor-train", "150",
                 "--factor-test", "80", "--factor-metrics", "mig,factor_vae", "--no-record"])
    assert code == 0
    text = capsys.readouterr().out
    assert "mean codes of 300 rows" in text and "MIG" in text and "FactorVAE score" in text
    assert "SAP" not in text


def test_encode_writes_the_factors_next_to_the_latents(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "codes.npz"
    assert main(["encode", str(run), "-o", str(out)]) == 0
    saved = np.load(out)
    assert saved["loc"].shape == (N, 3) and saved["factors"].shape == (N, 2)
    assert list(saved["factor_names"]) == ["row", "col"]
    # row for row: the factors of each code are those of its example
    original = np.load(run.parent / "sprites.npz")["factors"]
    np.testing.assert_array_equal(saved["factors"], original[saved["index"]])


def test_factors_on_data_without_factors_write_nothing(run: Path, capsys) -> None:
    before = (run / "metrics.jsonl").read_text()
    line = fails(capsys, "eval", run, "--factors", "--data", "digits")
    assert "has no factors" in line
    assert (run / "metrics.jsonl").read_text() == before


def test_factors_of_another_length_are_refused(run: Path, tmp_path: Path, capsys) -> None:
    bad = _sprites(tmp_path / "bad.npz", n_factors=N - 1)
    before = (run / "metrics.jsonl").read_text()
    line = fails(capsys, "eval", run, "--factors", "--data", bad)
    assert "factors" in line and str(N - 1) in line
    assert (run / "metrics.jsonl").read_text() == before
    out = tmp_path / "never"
    fails(capsys, "train", "--data", bad, "--epochs", "1", "--out", out)
    assert not out.exists()


def test_limit_is_refused_with_factors(run: Path, capsys) -> None:
    assert "--factor-rows" in fails(capsys, "eval", run, "--factors", "--limit", "10")


def test_an_unknown_metric_is_refused(run: Path, capsys) -> None:
    assert "unknown metric 'gap'" in fails(capsys, "eval", run, "--factors",
                                           "--factor-metrics", "mig,gap")


@pytest.mark.parametrize(("argv", "needle"), [
    (("--objective", "factorvae", "--batch-size", "1"), "at least 2 examples per batch"),
    (("--objective", "betatc", "--objective-option", "lambda_od=3"), "takes no option"),
    (("--objective", "dip", "--objective-option", "kind=iii"), "kind must be i or ii"),
    (("--objective", "betatc", "--family", "iaf"), "marginals"),
])
def test_bad_training_options_end_in_one_line_and_write_nothing(
    tmp_path: Path, capsys, argv: tuple[str, ...], needle: str
) -> None:
    data = _sprites(tmp_path / "sprites.npz")
    out = tmp_path / "run"
    assert needle in fails(capsys, "train", "--data", data, "--epochs", "1", "--hidden", "8",
                           "--latent-dim", "2", "--out", out, *argv)
    assert not out.exists()
