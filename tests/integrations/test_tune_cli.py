"""varfam tune on the command line: two processes share one SQLite study; bad input ends in
one line with exit code 2 (issue 29)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from varfam.cli import main  # noqa: E402

BASE = """
[model]
hidden = [16]
latent_dim = 2
[data]
source = "digits"
limit = 300
[train]
epochs = 2
validation = 60
batch_size = 64
"""

SPACE = """
[model]
latent_dim = {low = 2, high = 6}
[train]
lr = {low = 1e-4, high = 1e-2, log = true}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "base.toml").write_text(BASE)
    (tmp_path / "space.toml").write_text(SPACE)
    return tmp_path / "base.toml", tmp_path / "space.toml"


@pytest.mark.slow  # two processes each start Python, torch and optuna: about 17 s
def test_two_processes_share_one_sqlite_study(files, tmp_path) -> None:
    """Two `varfam tune` processes on one study folder (its SQLite storage): the trials
    are numbered once each, and together they are the total asked for."""
    base, space = files
    out = tmp_path / "shared"
    argv = [sys.executable, "-m", "varfam", "tune", "--config", str(base), "--space",
            str(space), "--trials", "4", "--out", str(out), "--sampler", "random",
            "--pruner", "none", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([*argv, "--seed", str(i)], env=env, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{out / 'study.db'}")
    assert sorted(t.number for t in study.trials) == list(range(4))
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    folders = sorted(p.name for p in out.glob("trial-*"))
    assert folders == [f"trial-{i:04d}" for i in range(4)]
    records = [json.loads((out / f / "trial.json").read_text()) for f in folders]
    assert [r["trial"] for r in records] == list(range(4))
    params = [tuple(sorted(r["params"].items())) for r in records]
    assert len(set(params)) == 4  # the two samplers' seeds differ: no trial repeated
    print("trials per process:", {p: [r["process"] for r in records].count(p)
                                  for p in {r["process"] for r in records}})


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = int(e.code)
    err = capsys.readouterr().err.strip()
    return code, err


def _one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_trials_zero(files, tmp_path, capsys) -> None:
    base, space = files
    code, err = _run(["tune", "--config", str(base), "--space", str(space), "--trials", "0",
                      "--out", str(tmp_path / "s")], capsys)
    _one_line(code, err, "--trials", "at least 1")


@pytest.mark.parametrize("text, needle", [
    ("", "the search space is empty"),
    ("[model]\n", "the search space is empty"),
    ("[model]\nlatent_dim = {low = 8, high = 2}\n", "low (8) must be below high (2)"),
    ("[train]\nlearning_rate = [0.1]\n", "unknown field 'learning_rate' in [train]"),
    ("[model\n", "is not valid TOML"),
])
def test_bad_space(files, tmp_path, capsys, text, needle) -> None:
    base, _ = files
    space = tmp_path / "bad.toml"
    space.write_text(text)
    code, err = _run(["tune", "--config", str(base), "--space", str(space),
                      "--out", str(tmp_path / "s")], capsys)
    _one_line(code, err, needle)
    assert not (tmp_path / "s").exists()  # nothing is created before the checks pass


@pytest.mark.parametrize("url, needle", [
    ("sqlite:////no/such/folder/study.db", "cannot open the storage sqlite:////no/such"),
    ("nosuchdb://host/db", "cannot open the storage nosuchdb://host/db"),
    ("study.db", "is not a storage URL"),
    ("journal:/no/such/folder/study.log", "cannot open the storage journal:"),
])
def test_storage_that_cannot_be_opened(files, tmp_path, capsys, url, needle) -> None:
    base, space = files
    code, err = _run(["tune", "--config", str(base), "--space", str(space), "--storage", url,
                      "--out", str(tmp_path / "s")], capsys)
    _one_line(code, err, needle)


@pytest.mark.slow  # kept out of make test's 4-minute budget
def test_existing_study_with_another_space(files, tmp_path, capsys) -> None:
    """Joining a study of the same name with another space says what differs."""
    base, space = files
    out = tmp_path / "s"
    argv = ["tune", "--config", str(base), "--trials", "1", "--out", str(out), "--quiet"]
    assert main([*argv, "--space", str(space)]) == 0
    other = tmp_path / "other.toml"
    other.write_text(SPACE.replace("high = 6", "high = 8"))
    code, err = _run([*argv, "--space", str(other)], capsys)
    _one_line(code, err, "study 's' in sqlite:///", "has another search space",
              'model.latent_dim is {"high": 6, "kind": "int", "low": 2} there and '
              '{"high": 8, "kind": "int", "low": 2} here')
    wider = tmp_path / "wider.toml"
    wider.write_text(SPACE.replace("[train]", 'family = ["diagonal", "iaf"]\n[train]'))
    code, err = _run([*argv, "--space", str(wider)], capsys)
    _one_line(code, err, "model.family is searched here, not there")
    code, err = _run([*argv, "--space", str(space), "--objective", "elbo,time"], capsys)
    _one_line(code, err, "optimizes elbo, not elbo,time")
    # the same study, joined as it is, runs one more trial when more are asked
    assert main([*argv[:3], "--space", str(space), "--trials", "2", *argv[5:]]) == 0


def test_base_config_without_validation(files, tmp_path, capsys) -> None:
    base, space = files
    base.write_text(BASE.replace("validation = 60\n", ""))
    code, err = _run(["tune", "--config", str(base), "--space", str(space),
                      "--out", str(tmp_path / "s")], capsys)
    _one_line(code, err, "the base config must hold some out", "[train] validation")


def test_multi_objective_cannot_prune(files, tmp_path, capsys) -> None:
    base, space = files
    code, err = _run(["tune", "--config", str(base), "--space", str(space), "--objective",
                      "elbo,time", "--pruner", "median", "--out", str(tmp_path / "s")], capsys)
    _one_line(code, err, "Optuna prunes single-objective studies only")
    code, err = _run(["tune", "--config", str(base), "--space", str(space), "--objective",
                      "elbo,bound", "--out", str(tmp_path / "s")], capsys)
    _one_line(code, err, "unknown objective 'bound'")


def test_without_optuna_the_command_says_the_pip_line(files, tmp_path, capsys,
                                                      monkeypatch) -> None:
    base, space = files
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    code, err = _run(["tune", "--config", str(base), "--space", str(space),
                      "--out", str(tmp_path / "s")], capsys)
    _one_line(code, err, "pip install 'varfam[tune]'")
