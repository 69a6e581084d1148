"""Nothing lost: `varfam train` killed, interrupted or doubled up on one run folder.

Every run here is a `varfam train` subprocess (one thread, fp32) on `digits` with a
small batch, so an epoch lasts long enough to be interrupted in its middle.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

EPOCHS = 4
ARGS = ["--data", "digits", "--hidden", "200", "--latent-dim", "4", "--batch-size", "4",
        "--precision", "fp32", "--seed", "7", "--quiet"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "varfam", "train", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def _info(run: Path) -> dict:
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        return json.loads(f.metadata()["info"])


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = _start(*ARGS, "--epochs", str(EPOCHS), "--out", str(out))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return out


def test_sigkill_then_resume_finishes_with_the_same_weights(
    reference: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    proc = _start(*ARGS, "--epochs", str(EPOCHS), "--out", str(run))
    _wait_for(run / "checkpoint.safetensors", proc)
    time.sleep(0.15)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _info(run)["epoch"]
    assert 1 <= done < EPOCHS, "the run finished before it was killed"

    resumed = subprocess.run([sys.executable, "-m", "varfam", "train", "--resume", str(run)],
                             capture_output=True, text=True, env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _same_weights(reference, run)
    epochs = [json.loads(s)["epoch"] for s in (run / "metrics.jsonl").read_text().splitlines()
              if '"kind"' not in s]
    assert epochs == list(range(1, EPOCHS + 1))


def test_sigint_saves_the_state_and_resume_is_exact(reference: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start(*ARGS, "--epochs", str(EPOCHS), "--out", str(run))
    _wait_for(run / "checkpoint.safetensors", proc)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    message = err.strip().splitlines()[-1]
    assert message.startswith("varfam: training stopped by SIGINT")
    assert f"varfam train --resume {run}" in message
    info = _info(run)
    assert info["epoch"] < EPOCHS

    resumed = subprocess.run([sys.executable, "-m", "varfam", "train", "--resume", str(run)],
                             capture_output=True, text=True, env=ENV, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _same_weights(reference, run)


def test_a_second_training_of_a_busy_folder_refuses_and_sigterm_stops(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start(*ARGS, "--epochs", "100", "--out", str(run))
    try:
        _wait_for(run / "checkpoint.safetensors", proc)
        second = subprocess.run(
            [sys.executable, "-m", "varfam", "train", *ARGS, "--epochs", "1", "--out", str(run)],
            capture_output=True, text=True, env=ENV, timeout=300,
        )
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert f"being trained by another process (PID {proc.pid})" in lines[-1]
        assert "Traceback" not in second.stderr
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "training stopped by SIGTERM" in err and "--resume" in err
    assert _info(run)["epoch"] < 100


def test_resume_of_a_finished_run_refuses(
    reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from varfam.cli import main

    assert main(["train", "--resume", str(reference)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("varfam: error: run ") and f"finished {EPOCHS} epochs" in err[-1]
