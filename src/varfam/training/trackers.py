"""Experiment trackers as training callbacks: TensorBoard, MLflow, Weights & Biases.

``varfam train … --track tensorboard,mlflow,wandb`` (or ``track=[...]`` in the
config) adds these callbacks after the user's. Each logs the run's configuration,
every numeric metric of every epoch against the epoch number, and the run's
pictures when they are written; MLflow also keeps ``report.html``,
``config.json`` and ``model.safetensors`` as artifacts. They write under
``track_dir`` (default ``RUN/tracking``):

- ``tensorboard/``: ``torch.utils.tensorboard`` event files (``tensorboard --logdir``);
- ``mlflow.db`` and ``mlartifacts/``: a local MLflow store, unless ``track_uri``
  names a tracking server or another store (``mlflow ui --backend-store-uri
  sqlite:///RUN/tracking/mlflow.db``);
- ``wandb/``: a W&B run, offline unless the user has logged in (``WANDB_API_KEY``
  or ``wandb login``); ``WANDB_MODE`` is respected.

A resumed run continues the same tracker run: TensorBoard drops events from the
epochs being redone, MLflow and W&B reopen the run whose id is kept in
``RUN/trackers.json``. Each tracker is an optional extra
(``pip install 'varfam[tensorboard]'``, ``[mlflow]``, ``[wandb]``, or ``[trackers]``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from varfam.errors import VarfamError
from varfam.training.callbacks import Callback, TrainingRun

if TYPE_CHECKING:  # pragma: no cover
    from varfam.config import TrainConfig
    from varfam.training.state import TrainResult, TrainState

__all__ = ["TensorBoardTracker", "MLflowTracker", "WandbTracker", "make_trackers", "TRACKER_IDS"]

#: The file in a run folder that remembers the tracker runs, so a resume continues them.
TRACKER_IDS = "trackers.json"


def _missing(module: str, extra: str) -> VarfamError:
    return VarfamError(
        f"--track {extra} needs the {module.split('.')[0]} package: pip install 'varfam[{extra}]'"
    )


def _require(module: str, extra: str) -> ModuleType:
    """Import an optional package, or end with the pip command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise _missing(module, extra) from None


def numeric_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers among an epoch's metrics (booleans and text left out)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def flat_config(run: TrainingRun) -> dict[str, str]:
    """The model, data and training configuration as flat ``section.key`` → text pairs."""
    from varfam.config import DataConfig, RunConfig

    data = run.data.config or DataConfig(source=None)
    model = (RunConfig(model=run.model.config, data=data, train=run.config)
             if run.model.config is not None else RunConfig(data=data, train=run.config)).to_dict()
    out = {}
    for section in ("model", "data", "train"):
        for key, value in model.get(section, {}).items():
            out[f"{section}.{key}"] = value if isinstance(value, str) else json.dumps(value)
    return out


class _Tracker(Callback):
    """Shared by the trackers: where they write, and the ids kept for a resume."""

    name = ""

    def __init__(self, track_dir: str | Path | None = None) -> None:
        self.track_dir = Path(track_dir) if track_dir is not None else None
        self.run: TrainingRun | None = None

    def _dir(self, run: TrainingRun) -> Path:
        if self.track_dir is None:
            if run.run_dir is None:
                raise VarfamError(f"--track {self.name} needs a run folder or a --track-dir")
            self.track_dir = run.run_dir / "tracking"
        self.track_dir.mkdir(parents=True, exist_ok=True)
        return self.track_dir

    def _saved_id(self, run: TrainingRun) -> str | None:
        """The id of this tracker's run in a resumed run folder."""
        path = run.run_dir / TRACKER_IDS if run.run_dir is not None else None
        if not (run.resumed and path is not None and path.is_file()):
            return None
        return json.loads(path.read_text()).get(self.name)

    def _save_id(self, run: TrainingRun, run_id: str) -> None:
        if run.run_dir is None:
            return
        from varfam.runs.checkpoint import write_text_atomic

        path = run.run_dir / TRACKER_IDS
        ids = json.loads(path.read_text()) if path.is_file() else {}
        write_text_atomic(path, json.dumps({**ids, self.name: run_id}, indent=2))


class TensorBoardTracker(_Tracker):
    """Scalars per epoch, the configuration as text, pictures as images (``SummaryWriter``)."""

    name = "tensorboard"

    def on_train_start(self, run: TrainingRun) -> None:
        _require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.run = run
        # a resumed run drops the events of the epochs it is about to redo
        purge = run.start_epoch + 1 if run.resumed else None
        self.writer = SummaryWriter(str(self._dir(run) / "tensorboard"), purge_step=purge)
        if not run.resumed:
            table = "\n".join(f"| {k} | {v} |" for k, v in flat_config(run).items())
            self.writer.add_text("config", "| option | value |\n|---|---|\n" + table, 0)

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        for key, value in numeric_metrics(metrics).items():
            if key != "epoch":
                self.writer.add_scalar(key, value, state.epoch)
        self.writer.flush()

    def on_images(self, state: TrainState, name: str, path: Path) -> None:
        import numpy as np
        from PIL import Image

        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB"))
        self.writer.add_image(name, pixels, state.epoch, dataformats="HWC")

    def on_train_end(self, result: TrainResult) -> None:
        self.writer.close()


class MLflowTracker(_Tracker):
    """Parameters, metrics per epoch and the run folder's files, through ``MlflowClient``
    (no global active run is set in the user's process)."""

    name = "mlflow"

    def __init__(self, track_dir: str | Path | None = None, uri: str | None = None,
                 experiment: str = "varfam") -> None:
        super().__init__(track_dir)
        self.uri, self.experiment = uri, experiment

    def on_train_start(self, run: TrainingRun) -> None:
        _require("mlflow", "mlflow")
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.run = run
        folder = self._dir(run)
        self.client = MlflowClient(tracking_uri=self.uri or f"sqlite:///{folder / 'mlflow.db'}")
        exp = self.client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(
            self.experiment,
            artifact_location=None if self.uri else (folder / "mlartifacts").resolve().as_uri(),
        )
        self.run_id = self._saved_id(run)
        if self.run_id is None:
            name = run.run_dir.name if run.run_dir is not None else None
            self.run_id = self.client.create_run(exp_id, run_name=name).info.run_id
            self._save_id(run, self.run_id)
            params = [Param(k, v[:6000]) for k, v in flat_config(run).items()]
            self.client.log_batch(self.run_id, params=params)
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, v, now, state.epoch) for k, v in numeric_metrics(metrics).items()
        ])

    def on_images(self, state: TrainState, name: str, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path), "pictures")

    def on_train_end(self, result: TrainResult) -> None:
        if result.run_dir is not None:
            for name in ("config.json", "model.safetensors", "report.html"):
                if (result.run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(result.run_dir / name))
        self.client.set_terminated(self.run_id)


class WandbTracker(_Tracker):
    """Config, metrics per epoch and pictures in a Weights & Biases run: offline unless the
    user has logged in; ``WANDB_MODE`` wins when set."""

    name = "wandb"

    def __init__(self, track_dir: str | Path | None = None, project: str = "varfam") -> None:
        super().__init__(track_dir)
        self.project = project

    def on_train_start(self, run: TrainingRun) -> None:
        wandb = _require("wandb", "wandb")
        self.run = run
        run_id = self._saved_id(run) or uuid.uuid4().hex[:12]
        self._save_id(run, run_id)
        mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_logged_in() else "offline")
        self.wb = wandb.init(
            project=self.project, dir=str(self._dir(run)), id=run_id, resume="allow", mode=mode,
            name=run.run_dir.name if run.run_dir is not None else None,
            config=flat_config(run), settings=wandb.Settings(silent=True, console="off"),
        )

    def on_epoch_end(self, state: TrainState, metrics: dict[str, Any]) -> None:
        self.wb.log(numeric_metrics(metrics), step=state.epoch)

    def on_images(self, state: TrainState, name: str, path: Path) -> None:
        import wandb

        self.wb.log({name: wandb.Image(str(path))}, step=state.epoch)

    def on_train_end(self, result: TrainResult) -> None:
        self.wb.finish()


def _wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


#: tracker name → the package it needs (the extra has the tracker's name)
_PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def make_trackers(cfg: TrainConfig, run_dir: Path | None) -> list[Callback]:
    """The trackers named in ``cfg.track``, writing under ``cfg.track_dir`` (or the run's).

    A tracker whose package is not installed ends here, before training, with the
    pip command that installs it.
    """
    made: list[Callback] = []
    for name in cfg.track:
        if importlib.util.find_spec(_PACKAGES[name]) is None:
            raise _missing(_PACKAGES[name], name)
        if name == "tensorboard":
            made.append(TensorBoardTracker(cfg.track_dir))
        elif name == "mlflow":
            made.append(MLflowTracker(cfg.track_dir, cfg.track_uri))
        elif name == "wandb":
            made.append(WandbTracker(cfg.track_dir))
    return made
