"""What a run folder holds after training or ``varfam.save``: the truth, with ordinary
permissions, and no lock left behind."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch

import varfam
from varfam import VAE
from varfam.cli import main
from varfam.config import RunConfig, TrainConfig
from varfam.errors import VarfamError
from varfam.runs.checkpoint import LOCK, RunLock, load_run_config, save_model

SMALL = dict(data_shape=(1, 8, 8), hidden=(16,), latent_dim=2)


def _modes(run: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.iterdir() if p.is_file()}


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_trained_run_has_ordinary_permissions_and_no_lock(tmp_path: Path, umask_022) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", "digits", "--limit", "200", "--epochs", "1", "--hidden", "16",
                 "--latent-dim", "2", "--out", str(out), "--quiet", "--no-report"]) == 0
    modes = _modes(out)
    assert {"model.safetensors", "checkpoint.safetensors", "config.json"} <= set(modes)
    assert not (out / LOCK).exists()
    assert set(modes.values()) == {0o644}, modes  # safetensors files were 0600


def test_the_umask_decides_the_permissions(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        save_model(VAE.build(**SMALL), tmp_path)
    finally:
        os.umask(old)
    assert set(_modes(tmp_path).values()) == {0o600}


def test_the_lock_is_removed_on_release_and_a_new_holder_can_take_it(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        assert (tmp_path / LOCK).is_file()
    assert not (tmp_path / LOCK).exists()
    first = RunLock(tmp_path)
    first.acquire()
    with pytest.raises(VarfamError, match="being trained by another process"):
        RunLock(tmp_path).acquire()
    first.release()
    with RunLock(tmp_path):  # the file was removed; a fresh one is created and locked
        with pytest.raises(VarfamError):
            RunLock(tmp_path).acquire()


def test_a_lock_file_removed_while_waiting_is_not_trusted(tmp_path: Path) -> None:
    """A holder that removes .lock between our open and our flock: we try again on the
    new file instead of holding a lock on a file nobody else can see."""
    lock = RunLock(tmp_path)
    lock.path.write_text("")
    real_flock = __import__("fcntl").flock
    calls = []

    def flock(fd: int, op: int) -> None:
        if not calls:  # the first attempt: the file disappears under us
            lock.path.unlink()
        calls.append(fd)
        real_flock(fd, op)

    import fcntl

    original = fcntl.flock
    fcntl.flock = flock
    try:
        lock.acquire()
    finally:
        fcntl.flock = original
    assert len(calls) == 2 and lock.path.is_file()
    assert lock.path.read_text().strip() == str(os.getpid())
    lock.release()


def test_save_without_a_train_config_writes_only_what_is_known(tmp_path: Path) -> None:
    model = VAE.build(**SMALL)
    varfam.save(model, tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert "train" not in written and written["model"]["latent_dim"] == 2
    cfg = load_run_config(tmp_path)
    assert cfg.train_recorded is False
    assert "train" not in json.loads(cfg.to_json())
    loaded = varfam.load(tmp_path)  # the model section alone rebuilds the model
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_save_with_a_train_config_records_it(tmp_path: Path) -> None:
    model = VAE.build(**SMALL)
    varfam.save(model, tmp_path, TrainConfig(epochs=10), varfam.DataConfig(source="digits"))
    cfg = load_run_config(tmp_path)
    assert cfg.train_recorded and cfg.train.epochs == 10 and cfg.data.source == "digits"
    varfam.save(model, tmp_path)  # weights again: the recorded training stays
    assert load_run_config(tmp_path).train.epochs == 10


def test_commands_on_a_run_saved_without_training(tmp_path: Path, capsys) -> None:
    model = VAE.build(**SMALL)
    varfam.save(model, tmp_path / "run")
    run = str(tmp_path / "run")
    assert main(["sample", run, "-n", "4", "-o", str(tmp_path / "s.npy")]) == 0
    assert main(["eval", run, "--iw", "0"]) == 2  # no data recorded: asks for it
    assert "--data" in capsys.readouterr().err
    assert main(["eval", run, "--data", "digits", "--iw", "0", "--json"]) == 0
    from varfam.reporting.page import run_summary

    assert run_summary(run)["objective"] is None  # not the default objective's name


def test_a_model_built_from_user_modules_is_not_described_by_a_made_up_config(
    tmp_path: Path,
) -> None:
    model = VAE.build(**SMALL)
    model.config = None
    with pytest.raises(VarfamError, match="not made by VAE.build"):
        varfam.save(model, tmp_path)
    assert not any(tmp_path.iterdir())


def test_run_config_without_train_section_round_trips(tmp_path: Path) -> None:
    cfg = RunConfig.model_only(varfam.config.ModelConfig(latent_dim=3))
    (tmp_path / "config.json").write_text(cfg.to_json())
    again = RunConfig.read(tmp_path / "config.json")
    assert not again.train_recorded and again.model.latent_dim == 3
    assert RunConfig().train_recorded  # a config built in code records its training
