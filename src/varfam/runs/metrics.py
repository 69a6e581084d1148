"""A run's ``metrics.jsonl``: one JSON object per line, read and written in one place.

Two kinds of line share the file:

- an *epoch line* per training epoch (no ``"kind"`` key): ``epoch``, ``step``,
  ``train_loss``, ``test_elbo`` … as the trainer's callbacks recorded them;
- an *eval line* per later measurement (``"kind": "eval"``), appended by
  ``varfam eval`` and ``varfam report``.

Lines are appended, so a kill can cut the last one short; readers skip it.
Non-finite floats are written as ``null`` (strict JSON).

>>> import tempfile
>>> run = tempfile.mkdtemp()
>>> append_record(run, {"epoch": 1, "test_elbo": -90.5})
>>> read_metrics(run)
([{'epoch': 1, 'test_elbo': -90.5}], [])
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "METRICS",
    "read_records",
    "read_metrics",
    "append_record",
    "write_records",
    "jsonable",
]

METRICS = "metrics.jsonl"


def read_records(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every JSON object line of ``run_dir/metrics.jsonl`` in order ([] if there is none)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_metrics(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(epoch lines, eval lines) of a run's ``metrics.jsonl``."""
    records = read_records(run_dir)
    epochs = [r for r in records if "kind" not in r]
    evals = [r for r in records if r.get("kind") == "eval"]
    return epochs, evals


def append_record(run_dir: str | Path, record: dict[str, Any]) -> None:
    """Append one line (made JSON-safe by :func:`jsonable`)."""
    with (Path(run_dir) / METRICS).open("a") as f:
        f.write(json.dumps(jsonable(record), allow_nan=False) + "\n")


def write_records(run_dir: str | Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace the file's lines by ``records``, atomically."""
    from varfam.runs.files import write_text_atomic

    text = "".join(json.dumps(jsonable(r), allow_nan=False) + "\n" for r in records)
    write_text_atomic(Path(run_dir) / METRICS, text)


def jsonable(value: Any) -> Any:
    """Plain JSON values: non-finite floats become ``None``, tensors and tuples lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # a tensor or NumPy value
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
