"""`varfam train`'s run folder: what it refuses before touching anything, and --overwrite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from varfam.cli import main

TINY = ["train", "--data", "digits", "--limit", "200", "--epochs", "1", "--hidden", "8",
        "--latent-dim", "2", "--quiet", "--no-report"]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main([*TINY, "--out", str(run)]) == 0
    return run


def _error(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_out_that_is_a_file_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("mine")
    assert main([*TINY, "--out", str(path)]) == 2
    assert "is a file, not a folder" in _error(capsys)
    assert main([*TINY, "--out", str(path / "run")]) == 2
    assert "is a file, not a folder" in _error(capsys)
    assert path.read_text() == "mine"


def test_out_that_holds_a_run_is_refused_and_left_byte_identical(finished, capsys) -> None:
    before = _snapshot(finished)
    assert main([*TINY, "--out", str(finished), "--seed", "9"]) == 2
    err = _error(capsys)
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert _snapshot(finished) == before


def test_overwrite_replaces_the_whole_run(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main([*TINY, "--out", str(run), "--epochs", "2"]) == 0
    (run / "report.html").write_text("the old run's report")
    (run / "mine.txt").write_text("not varfam's")
    assert main([*TINY, "--out", str(run), "--overwrite"]) == 0
    capsys.readouterr()
    assert not (run / "report.html").exists()  # --no-report: the old one must not stay
    assert (run / "mine.txt").read_text() == "not varfam's"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("case", ["objective", "range"])
def test_errors_found_before_training_leave_no_folder_and_print_one_line(
    case, tmp_path, capsys
) -> None:
    run = tmp_path / "run"
    if case == "objective":
        args = [*TINY, "--objective", "iwea", "--out", str(run)]
        message = "did you mean 'iwae'"
    else:  # grey levels outside [0, 1] for the bernoulli likelihood
        data = tmp_path / "big.npy"
        np.save(data, np.full((40, 1, 4, 4), 2.0, np.float32))
        args = ["train", "--data", str(data), "--epochs", "1", "--quiet", "--out", str(run)]
        message = "needs data in [0, 1]"
    assert main(args) == 2
    assert message in _error(capsys)
    assert not run.exists()


def test_boolean_options_have_a_no_form(tmp_path, capsys) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[train]\ncompile = true\nskip_nonfinite = true\n")
    assert main([*TINY, "--config", str(config), "--no-compile", "--no-skip-nonfinite",
                 "--out", str(tmp_path / "run")]) == 0
    import json

    train = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert train["compile"] is False and train["skip_nonfinite"] is False
