"""The documentation site builds with ``mkdocs build --strict`` (``make docs``).

Needs the ``docs`` extra (mkdocs-material, mkdocstrings[python]); skipped without it.
Slow: the build imports varfam for the parts catalogue and reads every module's
docstrings for the API reference.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-8000:]
    for page in ("index.html", "parts/index.html", "api/model/index.html"):
        assert (site / page).is_file(), page
    parts = (site / "parts" / "index.html").read_text(encoding="utf-8")
    assert "<code>diagonal</code>" in parts  # the catalogue was filled in
