"""Checkpoints and run folders: atomic writes, exact round trips, the run lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _models import small_vae
from varfam import VAE, VarfamError
from varfam.runs.checkpoint import (
    LOCK,
    RunLock,
    atomic_write,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)


def _model() -> VAE:
    return small_vae(None, hidden=(16,), latent_dim=2)


def _stepped(model: VAE) -> torch.optim.Adam:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        loss = -model.decode(model.encode(torch.rand(4, 1, 8, 8)).rsample()).mean.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return opt


def test_checkpoint_round_trip_restores_model_optimizer_and_states(tmp_path: Path) -> None:
    model = _model()
    opt = _stepped(model)
    states = {"data": torch.Generator().manual_seed(3).get_state(), "losses": torch.rand(5)}
    info = {"epoch": 2, "batch": 0, "step": 3, "wall_time": 1.5, "history": [{"epoch": 1}]}
    save_checkpoint(tmp_path / "c.safetensors", model, opt, states, info)

    fresh = _model()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    got_states, got_info = load_checkpoint(tmp_path / "c.safetensors", fresh, fresh_opt)
    assert got_info == info
    for k, v in states.items():
        assert torch.equal(got_states[k], v)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    # the optimizer continues identically: one more step from both gives the same weights
    x = torch.rand(4, 1, 8, 8)
    for m, o in ((model, opt), (fresh, fresh_opt)):
        torch.manual_seed(0)
        loss = -m.decode(m.encode(x).rsample()).mean.sum()
        o.zero_grad()
        loss.backward()
        o.step()
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")

    def broken(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary left


def test_a_corrupt_checkpoint_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "c.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(VarfamError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "c.safetensors", _model())


def test_save_and_load_model_keep_log_prob(tmp_path: Path) -> None:
    model = _model()
    save_model(model, tmp_path)
    again = load_model(tmp_path)
    x = torch.rand(3, 1, 8, 8)
    z = torch.randn(3, 2)
    torch.testing.assert_close(again.decode(z).log_prob(x), model.decode(z).log_prob(x))


def test_run_lock_refuses_a_second_holder_and_names_the_pid(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(VarfamError, match=f"another process \\(PID {os.getpid()}\\)"):
            RunLock(tmp_path).acquire()
    with RunLock(tmp_path):  # released on exit: a new holder gets it
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = (
        "import sys, time; from varfam.runs.checkpoint import RunLock; "
        f"RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(VarfamError, match=f"PID {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the lock with the process
        try:
            with RunLock(tmp_path):
                break
        except VarfamError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
