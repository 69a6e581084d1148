"""Sharing runs through the Hugging Face Hub.

A run folder (``config.json`` + ``model.safetensors``) is already what a Hub model
repo holds. ``varfam push RUN USER/REPO`` uploads it with a model card
(:mod:`varfam.hub.upload`, :mod:`varfam.hub.card`); ``varfam.load("hf://USER/REPO")``
and every command that takes a RUN read it back through the standard cache
(:mod:`varfam.hub.pull`). ``huggingface_hub`` is imported only when a Hub run is
used (``pip install 'varfam[hub]'``).
"""

from __future__ import annotations

from . import pull
from .card import model_card
from .pull import *  # noqa: F403  (HubRef, download, resolve_run, working_copy, ...)
from .upload import push

__all__ = [*pull.__all__, "push", "model_card"]
