"""The callbacks that leave pictures and the report in a run folder when training ends.

``varfam train`` passes them to :func:`varfam.train` (``callbacks=[RunPictures(),
RunReport()]``); a Python run adds them the same way. They live here, above the
training loop, so that training never imports reporting.
"""

from __future__ import annotations

import sys

from varfam.data.base import one_line
from varfam.errors import VarfamError
from varfam.reporting.page import write_report
from varfam.reporting.pictures import write_run_pictures
from varfam.runs.folder import scored_test_inputs
from varfam.tables.report import is_table, write_table_pictures
from varfam.training.callbacks import Callback, TrainingRun
from varfam.training.state import TrainResult

__all__ = ["RunFolderWriter", "RunPictures", "RunReport"]


class RunFolderWriter(Callback):
    """Writes something into the run folder once training has ended (seeded: by default
    with the run's seed), given the final model.

    The run is whole by then (weights, config.json, metrics.jsonl): a writer that fails
    says so in one line on stderr, naming the command that writes it again, and training
    still returns its result (the other writers still run).
    """

    #: What the writer leaves in the run folder, for the one line a failure prints.
    what = "files"
    #: The command that writes them again.
    again = "varfam report RUN"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def on_train_start(self, run: TrainingRun) -> None:
        self.run = run

    def on_train_end(self, result: TrainResult) -> None:
        if self.run.run_dir is None:
            return
        try:
            self.write(self.run, result, self.run.config.seed if self.seed is None else self.seed)
        except Exception as e:  # the run is saved: one line, not a lost exit status
            why = one_line(e) if isinstance(e, VarfamError) else \
                f"{type(e).__name__}: {one_line(e)}"
            again = self.again.replace("RUN", str(self.run.run_dir))
            print(f"varfam: the run is saved in {self.run.run_dir} (weights, config.json, "
                  f"metrics.jsonl), but its {self.what} could not be written: {why}; write "
                  f"them again with `{again}`", file=sys.stderr, flush=True)

    def write(self, run: TrainingRun, result: TrainResult, seed: int) -> None:
        raise NotImplementedError  # pragma: no cover


class RunPictures(RunFolderWriter):
    """At the end, writes the run folder's pictures (samples, reconstructions,
    interpolation, latent map) and hands each to the other callbacks' ``on_images``."""

    what = "pictures"

    def write(self, run: TrainingRun, result: TrainResult, seed: int) -> None:
        x = scored_test_inputs(run.data, run.config)
        # a table's pictures are its marginals, correlations and latent map, not image grids
        write = write_table_pictures if is_table(result.model) else write_run_pictures
        written = write(result.model, x, run.data.test_labels, run.run_dir, seed=seed)
        for name, path in written.items():
            run.log_image(result.state, name, path)


class RunReport(RunFolderWriter):
    """At the end, measures the trained model and writes ``RUN/report.html``
    (see :func:`varfam.reporting.page.write_report`), reusing the model in memory."""

    what = "report.html"

    def write(self, run: TrainingRun, result: TrainResult, seed: int) -> None:
        write_report(run.run_dir, data=run.data, seed=seed, model=result.model)
