"""The Makefile's set-up commands (issue 26, item 8): ``make demo`` is idempotent (a
second run keeps the trained run and says where it is), and the install drops pip's
"Location ... is ignored" warnings (this machine's pip configuration) while keeping
pip's other output and its exit status. Run against a stand-in virtual environment
whose ``python`` and ``varfam`` only record what they were asked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

FAKE_PYTHON = """#!/bin/sh
echo "WARNING: Location 'file:///opt/pypi-more/simple/six/' is ignored: it is neither a file \
nor a directory." >&2
echo "WARNING: Location 'file:///opt/pypi/simple/zuko/' is ignored: it is either a \
non-existing path or lacks a specific scheme." >&2
echo "pip says: $*"
exit "${FAKE_PIP_EXIT:-0}"
"""

FAKE_VARFAM = """#!/bin/sh
echo "varfam $*" >> calls.txt
mkdir -p runs/demo && echo weights > runs/demo/model.safetensors
"""


def project(tmp_path: Path, installed: bool) -> Path:
    """A copy of the Makefile and pyproject.toml beside a stand-in .venv."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name, text in (("python", FAKE_PYTHON), ("varfam", FAKE_VARFAM)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    if installed:
        stamp = tmp_path / ".venv" / ".varfam-installed"
        stamp.touch()
        later = (tmp_path / "pyproject.toml").stat().st_mtime + 10
        os.utime(stamp, (later, later))
    return tmp_path


def make(root: Path, *targets: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``make -s targets`` in ``root`` with a PATH of the few tools the recipes use: no
    apt-get, so the install's optional system packages are left alone."""
    tools = root / "tools"
    tools.mkdir(exist_ok=True)
    for name in ("awk", "touch", "mkdir", "cat"):
        found = shutil.which(name)
        if found and not (tools / name).exists():
            (tools / name).symlink_to(found)
    make_path = shutil.which("make")
    assert make_path is not None
    return subprocess.run([make_path, "-s", *targets], cwd=root, capture_output=True,
                          text=True, env={**os.environ, "PATH": str(tools), **env}, timeout=120)


def test_make_demo_twice_trains_once_and_says_where_the_run_is(tmp_path: Path) -> None:
    root = project(tmp_path, installed=True)
    first = make(root, "demo")
    assert first.returncode == 0, first.stderr
    assert (root / "calls.txt").read_text() == "varfam train --out runs/demo\n"
    weights = (root / "runs/demo/model.safetensors").read_bytes()
    second = make(root, "demo")
    assert second.returncode == 0, second.stderr
    assert (root / "calls.txt").read_text() == "varfam train --out runs/demo\n"  # not again
    assert "runs/demo" in second.stdout and "report.html" in second.stdout
    assert (root / "runs/demo/model.safetensors").read_bytes() == weights


def test_the_install_drops_pips_location_warnings_and_keeps_the_rest(tmp_path: Path) -> None:
    root = project(tmp_path, installed=False)
    done = make(root, ".venv/.varfam-installed")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "is ignored" not in out and "Location" not in out
    assert "pip says: -m pip install -q torch==2.13.0" in out
    assert "pip says: -m pip install -q -e .[test]" in out
    assert (root / ".venv" / ".varfam-installed").exists()


def test_a_failing_pip_still_fails_the_install(tmp_path: Path) -> None:
    root = project(tmp_path, installed=False)
    done = make(root, ".venv/.varfam-installed", FAKE_PIP_EXIT="1")
    assert done.returncode != 0
    assert not (root / ".venv" / ".varfam-installed").exists()
