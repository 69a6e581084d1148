"""Training: the loop, its state, the step, callbacks, trackers and DDP.

:func:`train` (``varfam.train``) is the whole loop on one screen
(:mod:`varfam.training.loop`); :class:`TrainState` is exactly what a checkpoint
holds; everything that only watches or reacts is a :class:`Callback`.
"""

from __future__ import annotations

from varfam.training.callbacks import Callback, CallbackList, TrainingRun
from varfam.training.loop import (
    TrainingInterrupted,
    train,
    train_from_config,
)
from varfam.training.state import TrainResult, TrainState

__all__ = [
    "train", "train_from_config", "TrainResult", "TrainState", "TrainingInterrupted",
    "Callback", "CallbackList", "TrainingRun",
]
