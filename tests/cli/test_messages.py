"""Messages that name the right fix (issue 26, item 6): each user error is one line
``varfam: error: ...`` with exit code 2, says what to do instead of repeating what was
done, and leaves existing runs byte-identical."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from varfam import VAE
from varfam.cli import main
from varfam.errors import VarfamError


def digest(path: Path) -> str:
    """One hash of a file, or of every file's name and bytes under a folder."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if p.is_file():
            h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode() + b"\0"
                     + p.read_bytes())
    return h.hexdigest()


def fails(capsys: pytest.CaptureFixture[str], *argv: object) -> str:
    """The one-line error of a command that must fail with exit code 2."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("varfam: error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A table with holes and a label column, images with a NaN pixel, unlabelled images."""
    root = tmp_path_factory.mktemp("messages")
    rng = np.random.default_rng(0)
    n = 80
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n) + 3,
                          "kind": rng.choice(["x", "y"], n)})
    frame.loc[::5, "a"] = np.nan
    frame.to_csv(root / "t.csv", index=False)
    frame.drop(columns="kind").to_csv(root / "plain.csv", index=False)
    images = rng.random((40, 1, 8, 8)).astype(np.float32)
    np.save(root / "plain8.npy", images)
    images[3, 0, 2, 2] = np.nan
    np.save(root / "nan8.npy", images)
    return root


# ------------------------------------------------------------------ NaN and --mask nan
def test_the_likelihood_check_names_the_fix_for_tables_and_for_arrays() -> None:
    x = torch.rand(4, 3)
    x[0, 1] = float("nan")
    with pytest.raises(VarfamError) as e:
        VAE.build(data_shape=(3,), latent_dim=2, hidden=(8,), likelihood="gaussian",
                         arch="mlp").likelihood.check_data(x)
    msg = str(e.value)
    assert "train with --mask nan if NaN marks missing values" not in msg  # the old advice
    assert "leave --likelihood out" in msg and "--mask nan" in msg and "\n" not in msg


def test_mask_nan_with_gaussian_on_a_table_does_not_advise_mask_nan(
        files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    msg = fails(capsys, "train", "--data", files / "t.csv", "--mask", "nan", "--likelihood",
                "gaussian", "--epochs", "1", "--out", tmp_path / "run", "--quiet")
    assert "train with --mask nan" not in msg and "--likelihood" in msg
    assert not (tmp_path / "run").exists()


def test_a_npy_with_nan_names_mask_nan(
        files: Path, digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    msg = fails(capsys, "train", "--data", files / "nan8.npy", "--epochs", "1",
                "--out", tmp_path / "run", "--quiet")
    assert "NaN" in msg and "--mask nan" in msg
    assert not (tmp_path / "run").exists()
    before = digest(digits_run)
    assert "--mask nan" in fails(capsys, "eval", digits_run, "--data", files / "nan8.npy")
    assert digest(digits_run) == before


# ------------------------------------------------------------------ runs and the Hub
def test_resume_with_a_file_says_it_is_a_file(
        files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = digest(files / "t.csv")
    msg = fails(capsys, "train", "--resume", files / "t.csv")
    assert "is a file, not a run folder" in msg and "does not exist" not in msg
    assert digest(files / "t.csv") == before


def test_push_asks_for_user_repo_not_an_hf_address(
        digits_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = digest(digits_run)
    for bad in ("not-a-repo-id", "a/b/c", "alice/"):
        msg = fails(capsys, "push", digits_run, bad)
        assert "USER/REPO" in msg and "hf://" not in msg and f"'{bad}'" in msg
    assert digest(digits_run) == before


# ------------------------------------------------------------------ labels
def test_a_run_conditioned_on_labels_names_the_label_flag() -> None:
    model = VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(8,),
                             condition="label", n_classes=3)
    with pytest.raises(VarfamError) as e:
        model.decode(torch.zeros(2, 2))
    msg = str(e.value)
    assert "--label CLASS" in msg and "pass y" not in msg


@pytest.mark.parametrize("flags", [["--condition", "label"], ["--labelled", "4"]])
def test_a_table_without_labels_points_to_label_column(
        flags: list[str], files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    msg = fails(capsys, "train", "--data", files / "plain.csv", *flags, "--epochs", "1",
                "--out", tmp_path / "run", "--quiet")
    assert "has no labels" in msg and "--label-column" in msg
    assert not (tmp_path / "run").exists()


def test_a_labelled_run_on_unlabelled_data_points_to_label_column(
        files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "labelled"
    assert main(["train", "--data", "digits", "--limit", "200", "--epochs", "1", "--hidden",
                 "8", "--latent-dim", "2", "--condition", "label", "--out", str(run),
                 "--quiet", "--no-report"]) == 0
    before = digest(run)
    msg = fails(capsys, "reconstruct", run, "--data", files / "plain8.npy",
                "-o", tmp_path / "r.png")
    assert "conditioned on labels" in msg and "--label-column" in msg
    assert digest(run) == before
