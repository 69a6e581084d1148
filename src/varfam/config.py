"""Typed configuration: what rebuilds a model and what reproduces a training run.

A run's ``config.json`` is ``{"model": ModelConfig, "train": TrainConfig}``.
Loading validates every key and type before anything is built; unknown keys end
in a :class:`VarfamError` that lists the known ones.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from varfam.errors import VarfamError, suggest

__all__ = ["ModelConfig", "TrainConfig", "RunConfig", "load_toml", "from_dict"]

CONFIG_VERSION = 1

#: ``TrainConfig.compile_mode`` values.
COMPILE_MODES = ("default", "max-autotune")

#: ``TrainConfig.labelled_weight`` values: how M2's loss weighs a batch's labelled rows.
LABELLED_WEIGHTS = ("batch", "data")

#: ``TrainConfig.track`` values: the experiment trackers of :mod:`varfam.training.trackers`.
TRACKERS = ("tensorboard", "mlflow", "wandb")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model's architecture (weights live elsewhere)."""

    data_shape: tuple[int, ...] = (1, 28, 28)
    arch: str = "mlp"
    hidden: tuple[int, ...] = (400,)
    latent_dim: int = 20
    family: str = "diagonal"
    family_options: dict[str, Any] = field(default_factory=dict)
    #: ``None``: the family's natural prior (``standard`` for Gaussian families,
    #: ``uniform-sphere`` for vmf/powerspherical, ``categorical`` for gumbel/bernoulli).
    prior: str | None = None
    prior_options: dict[str, Any] = field(default_factory=dict)
    likelihood: str = "bernoulli"
    likelihood_options: dict[str, Any] = field(default_factory=dict)
    #: Options of the architecture (e.g. the ``tabular`` one's ``levels`` per column).
    arch_options: dict[str, Any] = field(default_factory=dict)
    #: ``"label"``: every part may read the example's class y (a conditional VAE,
    #: :mod:`varfam.nets.conditioning`); ``None``: no condition.
    condition: str | None = None
    #: The number of classes C of a model conditioned on labels, and their names.
    n_classes: int = 0
    classes: tuple[str, ...] = ()
    #: A classifier q(y|x) for semi-supervised data (labels hidden for some examples).
    classifier: bool = False

    def __post_init__(self) -> None:
        self.data_shape = tuple(int(s) for s in self.data_shape)
        self.hidden = tuple(int(s) for s in self.hidden)
        self.classes = tuple(str(c) for c in self.classes)
        if self.condition not in (None, "label"):
            raise VarfamError(f"condition must be label or none, got '{self.condition}'")
        if self.condition is None and self.classifier:
            raise VarfamError("a classifier q(y|x) needs a model conditioned on labels "
                              "(condition = \"label\")")
        if self.classes and self.n_classes != len(self.classes):
            raise VarfamError(f"{len(self.classes)} class names for n_classes = "
                              f"{self.n_classes}; give one name per class")
        if self.latent_dim < 1:
            raise VarfamError(f"latent_dim must be at least 1, got {self.latent_dim}")
        if any(h < 1 for h in self.hidden):
            raise VarfamError(f"hidden widths must be positive, got {self.hidden}")


@dataclass
class TrainConfig:
    """How a model was (or will be) trained; recorded so a run can be reproduced."""

    data: str = "mnist5k"
    data_dir: str | None = None
    data_key: str | None = None
    image_size: int | None = None
    binarize: str = "none"
    #: Tables: a column kept out of the model and used as the labels.
    label_column: str | None = None
    #: Tables: a ``.toml`` or ``.csv`` file declaring column types (overrides inference).
    column_types: str | None = None
    #: Images with missing pixels: a ``.npy`` of booleans (True = missing) shaped like the
    #: data (one per example, or one for all), or ``"nan"``: the data's NaN pixels are missing.
    mask: str | None = None
    #: Use only the first N training examples (quick runs); the test set is then cut
    #: to ``test_limit``, or to max(N // 10, 1) when ``test_limit`` is not set.
    limit: int | None = None
    #: Use only the first N test examples (default: all, or max(limit // 10, 1)).
    test_limit: int | None = None
    objective: str = "elbo"
    objective_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    skip_nonfinite: bool = False
    #: Compile the training step (loss, gradients) with ``torch.compile``: about 1.5×
    #: faster for gated MLPs on a CPU, after 10–20 s of compilation. Needs a C++
    #: compiler on a CPU (Triton on a GPU). Evaluation is never compiled.
    compile: bool = False
    #: How ``compile`` compiles: ``default``, or ``max-autotune``, which times several
    #: matrix-product kernels for each product and picks the fastest (and, on a CPU,
    #: calls the kernels from generated C++ rather than Python). Measured on the 2-core
    #: development CPU: no consistent gain over ``default`` (docs/performance.md); the
    #: tuning is cached on disk.
    compile_mode: str = "default"
    #: Hold out the last N training examples as a validation set (binarized once,
    #: like the test set); ``model.safetensors`` then keeps the best-validation weights.
    validation: int = 0
    #: Evaluate the test (and validation) ELBO every N epochs and after the last one;
    #: ``model.safetensors`` is written at those evaluations. Epochs in between log
    #: their training loss and speed only.
    eval_every: int = 1
    #: Stop when the validation ELBO has not improved for this many epochs.
    patience: int | None = None
    #: ``constant`` or ``cosine`` (decay from ``lr`` to ``lr * lr_final_ratio``
    #: over the epochs, or over ``time_limit`` when that comes first).
    lr_schedule: str = "constant"
    lr_final_ratio: float = 0.0
    #: Stop after the epoch during which this many minutes of wall time passed.
    time_limit: float | None = None
    #: Decay of an exponential moving average of the weights, updated after every
    #: step (e.g. 0.999: an average over the last ~1,000 steps). The averaged
    #: weights are the ones evaluated, chosen on validation and saved as the model;
    #: the raw weights go on training. ``None``: no average.
    ema: float | None = None
    #: Experiment trackers that receive the metrics, the configuration and the pictures:
    #: any of ``tensorboard``, ``mlflow``, ``wandb`` (:mod:`varfam.training.trackers`).
    track: list[str] = field(default_factory=list)
    #: Where trackers write their files; ``None``: ``RUN/tracking``.
    track_dir: str | None = None
    #: MLflow's tracking URI (a server, or a store); ``None``: a local store in ``track_dir``.
    track_uri: str | None = None
    #: Keep the labels of this many training examples, balanced per class and chosen
    #: with the seed, and hide the rest (semi-supervised training, model M2).
    labelled: int | None = None
    #: Weight of ``log q(y|x)`` per labelled example; ``None``: 0.1 · N / N_labelled,
    #: the choice of Kingma et al. (2014).
    alpha: float | None = None
    #: The share of every batch drawn from the labelled examples (the rest from the
    #: unlabelled ones); ``None``: the data's own share, but at least a tenth.
    labelled_ratio: float | None = None
    #: How a batch's labelled rows weigh against its unlabelled ones in the loss:
    #: ``"batch"``, as their share of the batch (labelled examples count as often as
    #: they are drawn); ``"data"``, as their share of the data (the paper's sum).
    labelled_weight: str = "batch"

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise VarfamError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise VarfamError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise VarfamError(f"lr must be positive, got {self.lr}")
        if self.binarize not in ("none", "static", "dynamic"):
            raise VarfamError(
                f"binarize must be none, static or dynamic, got '{self.binarize}'"
            )
        if self.precision not in ("auto", "bf16", "fp32"):
            raise VarfamError(f"precision must be auto, bf16 or fp32, got '{self.precision}'")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise VarfamError(f"device must be auto, cpu or cuda, got '{self.device}'")
        if self.compile_mode not in COMPILE_MODES:
            raise VarfamError(
                f"compile_mode must be {' or '.join(COMPILE_MODES)}, got '{self.compile_mode}'"
            )
        if self.eval_every < 1:
            raise VarfamError(f"eval_every must be at least 1, got {self.eval_every}")
        if self.validation < 0:
            raise VarfamError(f"validation must be 0 or more, got {self.validation}")
        if self.patience is not None and self.patience < 1:
            raise VarfamError(f"patience must be at least 1, got {self.patience}")
        if self.patience is not None and not self.validation:
            raise VarfamError("patience needs a validation set: add --validation N")
        if self.lr_schedule not in ("constant", "cosine"):
            raise VarfamError(f"lr_schedule must be constant or cosine, got '{self.lr_schedule}'")
        if not 0.0 <= self.lr_final_ratio <= 1.0:
            raise VarfamError(f"lr_final_ratio must be in [0, 1], got {self.lr_final_ratio}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise VarfamError(f"time_limit must be positive (minutes), got {self.time_limit}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise VarfamError(f"ema must be a decay in (0, 1), e.g. 0.999, got {self.ema}")
        unknown = [t for t in self.track if t not in TRACKERS]
        if unknown:
            raise VarfamError(
                f"unknown tracker '{unknown[0]}'{suggest(unknown[0], TRACKERS)}; "
                f"track takes any of {', '.join(TRACKERS)}"
            )
        if self.limit is not None and self.limit < 1:
            raise VarfamError(f"limit must be at least 1, got {self.limit}")
        if self.labelled is not None and self.labelled < 1:
            raise VarfamError(f"labelled must be at least 1, got {self.labelled}")
        if self.alpha is not None and not self.alpha >= 0:
            raise VarfamError(f"alpha must be 0 or more, got {self.alpha}")
        if self.labelled_ratio is not None and not 0.0 < self.labelled_ratio < 1.0:
            raise VarfamError(f"labelled_ratio must be in (0, 1), got {self.labelled_ratio}")
        if self.labelled_weight not in LABELLED_WEIGHTS:
            raise VarfamError(f"labelled_weight must be {' or '.join(LABELLED_WEIGHTS)}, "
                              f"got '{self.labelled_weight}'")
        if self.labelled is None and (self.alpha is not None or self.labelled_ratio is not None
                                      or self.labelled_weight != "batch"):
            raise VarfamError("alpha, labelled_ratio and labelled_weight are settings of "
                              "semi-supervised training; add --labelled N")
        if self.test_limit is not None and self.test_limit < 1:
            raise VarfamError(f"test_limit must be at least 1, got {self.test_limit}")


@dataclass
class RunConfig:
    """A run's full configuration: ``model`` and ``train`` sections.

    A ``config.json`` written for a model saved without a :class:`TrainConfig`
    (``varfam.save(model, dir)``) has no ``train`` section: nothing is claimed about a training
    that varfam did not see. Reading it gives ``train_recorded = False`` and a
    default ``train`` that only supplies neutral settings (no binarization, seed 0);
    :func:`varfam.runs.folder.run_dataset` then asks for the data by name.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: int = CONFIG_VERSION
    #: Whether ``train`` is what happened (``False``: it holds defaults and is not written).
    train_recorded: typing.ClassVar[bool] = True

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not self.train_recorded:
            del out["train"]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> RunConfig:
        return from_dict(cls, data, where)

    @classmethod
    def read(cls, path: str | Path) -> RunConfig:
        """Read and validate a ``config.json``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise VarfamError(f"{path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise VarfamError(f"{path} is not valid JSON ({e}); restore it or retrain") from None
        cfg = cls.from_dict(data, str(path))
        if "train" not in data:
            cfg.train_recorded = False
        elif cfg.train.labelled is not None and "labelled_weight" not in data["train"]:
            cfg.train.labelled_weight = "data"  # how runs written before the option weighed
        return cfg

    @classmethod
    def model_only(cls, model: ModelConfig) -> RunConfig:
        """A config that records the model and no training (``to_json`` leaves ``train`` out)."""
        cfg = cls(model=model)
        cfg.train_recorded = False
        return cfg


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Check (and lightly coerce) ``value`` against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise VarfamError(f"{where} must be a list, got {type(value).__name__}")
        return tuple(_check_type(v, args[0], where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise VarfamError(f"{where} must be a table/object, got {type(value).__name__}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise VarfamError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise VarfamError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise VarfamError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise VarfamError(f"{where} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise VarfamError(f"{where} must be a table/object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise VarfamError(
                f"unknown key '{key}' in {where}{suggest(key, fields)}; "
                f"known keys: {', '.join(fields)}"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, f"{where}.{key}")
        else:
            kwargs[key] = _check_type(value, tp, f"{where}.{key}")
    return cls(**kwargs)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a plain dict (sections ``[model]`` and ``[train]``)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise VarfamError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise VarfamError(f"config file {path} is not valid TOML: {e}") from None
