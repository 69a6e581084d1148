"""Sharing a run folder: the Hugging Face Hub (:mod:`~varfam.sharing.push`, with its model
card :mod:`~varfam.sharing.card`) and ONNX export (:mod:`~varfam.sharing.onnx`).

Reading a run back from the Hub is part of the run folder (:mod:`varfam.runs.hub`).
The optional packages (``huggingface_hub``, ``onnx``) are imported only on use.
"""

from __future__ import annotations

__all__: list[str] = []
