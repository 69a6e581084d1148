"""The run folder: ``config.json``, ``model.safetensors``, ``checkpoint.safetensors``,
``metrics.jsonl``, a lock, and the atomic writes that keep them whole.

A run folder is varfam's unit of work and of sharing: :func:`save_model` and
:func:`load_model` (``varfam.save`` / ``varfam.load``) write and read it, nothing in it
is ever unpickled, and ``hf://USER/REPO`` names a run folder on the Hugging Face Hub
(:mod:`varfam.runs.hub`).
"""

from __future__ import annotations

from varfam.runs.checkpoint import (
    RunLock,
    load_checkpoint,
    load_model,
    load_run_config,
    save_checkpoint,
    save_model,
)
from varfam.runs.files import CHECKPOINT, CONFIG, WEIGHTS, atomic_write, write_text_atomic
from varfam.runs.folder import open_run, run_dataset, run_test_data
from varfam.runs.metrics import METRICS, append_record, read_metrics, read_records

__all__ = [
    "save_model", "load_model", "load_run_config", "save_checkpoint", "load_checkpoint",
    "RunLock", "open_run", "run_dataset", "run_test_data", "CONFIG", "WEIGHTS", "CHECKPOINT",
    "METRICS", "atomic_write", "write_text_atomic", "append_record", "read_metrics",
    "read_records",
]
