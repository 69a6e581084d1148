"""The callbacks of a study's trial: pruning on the validation ELBO, and the objective values.

They live apart from :mod:`varfam.integrations.tune` so that ``varfam --help`` (which
reads the tune command's choices) imports no torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from varfam.errors import VarfamError
from varfam.training.callbacks import Callback

if TYPE_CHECKING:  # pragma: no cover
    from varfam.training.callbacks import TrainingRun
    from varfam.training.state import TrainResult, TrainState

__all__ = ["PruningCallback", "Measure", "NoValidation", "NO_VALIDATION"]

NO_VALIDATION = (
    "a study measures and prunes trials on validation examples: the base config must hold "
    "some out, e.g. [train] validation = 5000 (a tenth of the data)")


class NoValidation(VarfamError):
    """The trial's training holds out no validation examples: no trial of the study can be
    measured, so the study stops."""


class PruningCallback(Callback):
    """Reports each epoch's validation ELBO to an Optuna ``trial``; stops a pruned training.

    After epoch ``t``'s evaluation, ``trial.report(validation_elbo, t)``; when
    ``trial.should_prune()``, the training stops at the start of the next epoch (so that
    epoch ``t``'s line of ``metrics.jsonl`` and its checkpoint are written) by raising
    ``optuna.TrialPruned``; ``pruned_after`` is then ``t``. After the last epoch there is
    no next one: the caller reads ``pruned_after``.
    """

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self.pruned_after: int | None = None
        self.last: float | None = None

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        value = metrics.get("validation_elbo")
        if value is None or not math.isfinite(value):
            return
        self.last = value
        self.trial.report(value, state.epoch)
        if self.trial.should_prune():
            self.pruned_after = state.epoch

    def on_epoch_start(self, state: TrainState) -> None:
        if self.pruned_after is not None:
            import optuna

            raise optuna.TrialPruned(f"pruned after epoch {self.pruned_after}")


class Measure(Callback):
    """The trial's objective values, from the finished training (and its validation set)."""

    def __init__(self, objectives: list[str], iw: int) -> None:
        self.objectives, self.iw = objectives, iw

    def on_train_start(self, run: TrainingRun) -> None:
        if not run.config.validation:  # the resolved config: a table may choose a split
            raise NoValidation(NO_VALIDATION)
        self.run = run

    def values(self, result: TrainResult) -> list[float | None]:
        out: list[float | None] = []
        for name in self.objectives:
            if name == "elbo":
                out.append(result.state.best_validation)
            elif name == "time":
                out.append(result.state.wall_time)
            else:
                out.append(self._log_likelihood(result))
        return out

    def _log_likelihood(self, result: TrainResult) -> float:
        """IS log p(x) of the chosen weights on the validation rows, as training scored them."""
        import torch

        from varfam.data import binarize_fixed, split_seed
        from varfam.evaluation.bounds import importance_sampling
        from varfam.training.batches import float_chunks, split_rows

        cfg, data = self.run.config, self.run.data
        n, n_val = int(data.train.shape[0]), int(cfg.validation or 0)
        _, held = split_rows(data.train, n - n_val)
        x = torch.cat(list(float_chunks(held, 10_000)))
        if cfg.binarize != "none":
            x = binarize_fixed(x, split_seed(cfg.seed, "validation"))
        y = None
        if result.model.uses_labels and data.train_labels is not None:
            y = data.train_labels[n - n_val:]
        res = importance_sampling(result.model, x, self.iw, seed=cfg.seed, y=y)
        return float(res.log_likelihood.mean())
