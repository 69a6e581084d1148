"""Typed configuration: what rebuilds a model, what describes its data, how it trains.

A run's ``config.json`` (and a TOML file for ``varfam train --config``) has three
sections: ``model`` (:class:`ModelConfig`), ``data`` (:class:`DataConfig`: the source,
the limits, the labels kept, the mask, the column types) and ``train``
(:class:`TrainConfig`). Loading validates every key and type before anything is built;
unknown keys end in a :class:`VarfamError` that lists the known ones.

Every field that ``varfam train`` takes as a flag says so in its metadata
(:func:`option`: the help text, the choices, a flag name where it differs from the
field's); the command line is generated from these dataclasses, so the CLI and Python
share one list of names, defaults and checks.

>>> cfg = RunConfig.from_dict({"data": {"source": "digits", "limit": 200},
...                            "train": {"epochs": 2}})
>>> cfg.data.source, cfg.data.limit, cfg.train.epochs
('digits', 200, 2)
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from varfam.errors import VarfamError, suggest

__all__ = ["ModelConfig", "DataConfig", "TrainConfig", "RunConfig", "load_toml", "from_dict",
           "option", "DATA_FIELDS", "toml_key", "toml_value"]

CONFIG_VERSION = 1

#: ``TrainConfig.compile_mode`` values.
COMPILE_MODES = ("default", "max-autotune")

#: ``TrainConfig.labelled_weight`` values: how M2's loss weighs a batch's labelled rows.
LABELLED_WEIGHTS = ("batch", "data")

#: ``TrainConfig.track`` values: the experiment trackers of :mod:`varfam.training.trackers`.
TRACKERS = ("tensorboard", "mlflow", "wandb")
BINARIZE = ("none", "static", "dynamic")
PRECISIONS = ("auto", "bf16", "fp32")
LR_SCHEDULES = ("constant", "cosine")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    default_factory: Any = dataclasses.MISSING,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    minimum: float | None = None,
    above: bool = False,
    cli: bool = True,
) -> Any:
    """A config field that ``varfam train`` also takes as a flag.

    ``help`` is the flag's help; ``flag`` its name where it is not ``--field-name``;
    ``choices`` the values it takes; ``minimum`` (with ``above`` for a strict bound) the
    lowest number it takes on the command line. ``cli=False``: a field the command line
    does not set (it is still read from a TOML file).
    """
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar,
            "minimum": minimum, "above": above, "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model's architecture (weights live elsewhere)."""

    data_shape: tuple[int, ...] = option((1, 28, 28), cli=False)
    #: ``None``: chosen from the data (``mlp`` for images and vectors, ``tabular`` for tables).
    arch: str | None = option(None, "network architecture: mlp, gated-mlp or conv (default: "
                              "mlp; tabular for a table)")
    hidden: tuple[int, ...] = option((400,), "hidden widths, e.g. 400 or 512,256")
    latent_dim: int = option(20, "latent dimensions D (default: 20)", minimum=1)
    family: str = option("diagonal", "variational family q(z|x) (default: diagonal)")
    family_options: dict[str, Any] = field(default_factory=dict)
    #: ``None``: the family's natural prior (``standard`` for Gaussian families,
    #: ``uniform-sphere`` for vmf/powerspherical, ``categorical`` for gumbel/bernoulli).
    prior: str | None = option(None, "prior p(z) (default: standard)")
    prior_options: dict[str, Any] = field(default_factory=dict)
    #: ``None``: chosen from the data (``bernoulli`` for images and vectors, ``mixed`` over
    #: the columns for tables).
    likelihood: str | None = option(None, "likelihood p(x|z) (default: bernoulli; mixed for "
                                    "a table)")
    likelihood_options: dict[str, Any] = field(default_factory=dict)
    #: Options of the architecture (e.g. the ``tabular`` one's ``levels`` per column).
    arch_options: dict[str, Any] = field(default_factory=dict)
    #: ``"label"``: every part may read the example's class y (a conditional VAE,
    #: :mod:`varfam.nets.conditioning`); ``None``: no condition.
    condition: str | None = option(
        None, "label: a conditional VAE, every part reads the example's class y (sample a "
        "class with varfam sample RUN --label CLASS)", choices=("label",))
    #: The number of classes C of a model conditioned on labels, and their names.
    n_classes: int = 0
    classes: tuple[str, ...] = ()
    #: A classifier q(y|x) for semi-supervised data (labels hidden for some examples).
    classifier: bool = False
    #: Written by varfam, not an option: the parts left unset (``arch``, ``likelihood``,
    #: ``prior``) that were chosen for the data or the family, with ``prior_options.KEY``
    #: for an option of a family's natural prior; the report shows them apart from what
    #: the user set (see :attr:`TrainConfig.chosen_from_data`).
    chosen_from_data: list[str] = field(default_factory=list)

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


#: The fields that describe the data: a ``config.json`` or TOML file written before
#: :class:`DataConfig` existed holds them in its ``train`` section (``data`` and
#: ``data_key`` were the old names of ``source`` and ``key``).
DATA_FIELDS = {"data": "source", "data_dir": "data_dir", "data_key": "key",
               "image_size": "image_size", "label_column": "label_column",
               "column_types": "column_types", "mask": "mask", "limit": "limit",
               "test_limit": "test_limit", "labelled": "labelled"}


@dataclass
class DataConfig:
    """What describes the data a run trains on: where it comes from and what of it is used.

    ``source`` is a named data set (``varfam list``) or a path (``.npy``/``.npz``, an
    image folder, a table); ``None`` for data given in memory (a run trained so must be
    told its data again, ``--data``). :func:`varfam.load_data` turns a ``DataConfig``
    into a :class:`~varfam.data.Dataset`, and every dataset says the ``DataConfig`` that
    made it (``Dataset.config``), which a run records in ``config.json``.
    """

    source: str | None = option(
        "mnist5k", "dataset name (varfam list) or a .npy/.npz file or image folder", flag="--data")
    data_dir: str | None = option(None, "folder holding a named dataset's files")
    key: str | None = option(None, "array name inside a .npz with several arrays",
                             flag="--key")
    image_size: int | None = option(None, "resize folder images to SIZE×SIZE", minimum=1)
    #: Tables: a column kept out of the model and used as the labels.
    label_column: str | None = option(
        None, "tables: the column of labels, kept out of the model", metavar="NAME")
    #: Tables: a ``.toml`` or ``.csv`` file declaring column types (overrides inference).
    column_types: str | None = option(
        None, "tables: .toml or .csv giving column types (real, positive, count, count-nb, "
        "categorical, ordinal) instead of the inferred ones", metavar="FILE")
    #: Images with missing pixels: a ``.npy`` of booleans (True = missing) shaped like the
    #: data (one per example, or one for all), or ``"nan"``: the data's NaN pixels are missing.
    mask: str | None = option(
        None, "hide these values (a .npy of booleans, True = missing), or nan: the data's "
        "NaN values are missing", metavar="FILE.npy|nan")
    #: Use only the first N training examples (quick runs); the test set is then cut
    #: to ``test_limit``, or to max(N // 10, 1) when ``test_limit`` is not set.
    limit: int | None = option(
        None, "use only the first N training examples (and, unless --test-limit is given, "
        "the first max(N/10, 1) test examples)", minimum=1)
    #: Use only the first N test examples (default: all, or max(limit // 10, 1)).
    test_limit: int | None = option(None, "use only the first N test examples", minimum=1)
    #: Keep the labels of this many training examples, balanced per class and chosen
    #: with the training seed, and hide the rest (semi-supervised training, model M2).
    labelled: int | None = option(
        None, "semi-supervised (M2): keep the labels of N training examples, balanced per "
        "class and chosen with the seed, hide the rest; the model learns a classifier "
        "q(y|x) (varfam classify RUN); with --alpha 50 --beta 2 it beat its classifier "
        "alone on Fashion-MNIST (docs/results.md, Labels)", metavar="N", minimum=1)

    def __post_init__(self) -> None:
        for name in ("limit", "test_limit", "labelled", "image_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise VarfamError(f"{name} must be at least 1, got {value}")


@dataclass
class TrainConfig:
    """How a model was (or will be) trained; recorded so a run can be reproduced.

    ``objective``, ``epochs``, ``batch_size``, ``validation`` and ``patience`` left at
    ``None`` (and IWAE's ``k`` and ``estimator`` left out of ``objective_options``) are
    chosen from the data when training starts (:func:`varfam.training.defaults.resolved`:
    today's ELBO, 30 epochs and batches of 128 for images and vectors; for a table the
    IWAE recipe with a step budget, a validation split and early stopping), and a run's
    ``config.json`` records the values chosen.
    """

    binarize: str = option("none", "binarize the data: none, static (once) or dynamic "
                           "(every epoch)", choices=BINARIZE)
    objective: str | None = option(
        None, "training objective: elbo or iwae (default from the data: elbo; for a table "
        "iwae with --k 20 --estimator dreg)")
    objective_options: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = option(
        None, "epochs (default from the data: 30; for a table as many as make about 3,000 "
        "steps, at most 1,000)", minimum=1)
    batch_size: int | None = option(
        None, "batch size (default from the data: 128; for a table 64, up to 512 for large "
        "tables)", minimum=1)
    lr: float = option(1e-3, "Adam learning rate (default: 1e-3)", minimum=0.0, above=True)
    seed: int = option(0, "random seed (default: 0)", minimum=0)
    device: str = option("auto", "auto, cpu or cuda (default: auto)")
    precision: str = option("auto", "training precision (default: auto = bf16 where fast; "
                            "eval is fp32)", choices=PRECISIONS)
    skip_nonfinite: bool = option(False, "skip batches whose loss is nan/inf (counted in "
                                  "metrics.jsonl) instead of stopping")
    #: Compile the training step (loss, gradients) with ``torch.compile``: about 1.5×
    #: faster for gated MLPs on a CPU, after 10–20 s of compilation. Needs a C++
    #: compiler on a CPU (Triton on a GPU). Evaluation is never compiled.
    compile: bool = option(False, "compile the training step with torch.compile (faster for "
                           "long runs; 10-20 s to compile)")
    #: How ``compile`` compiles: ``default``, or ``max-autotune``, which times several
    #: matrix-product kernels for each product and picks the fastest (and, on a CPU,
    #: calls the kernels from generated C++ rather than Python). Measured on the 2-core
    #: development CPU: no consistent gain over ``default`` (docs/performance.md); the
    #: tuning is cached on disk.
    compile_mode: str = option(
        "default", "with --compile: max-autotune times several kernels per matrix product "
        "and keeps the fastest (no consistent gain on the development CPU; see "
        "docs/performance.md)", choices=COMPILE_MODES)
    #: Hold out the last N training examples as a validation set (binarized once,
    #: like the test set); ``model.safetensors`` then keeps the best-validation weights.
    validation: int | None = option(
        None, "hold out the last N training examples for validation; the saved weights are "
        "then the best on validation (default from the data: 0; for a table a tenth of its "
        "training rows)", minimum=0)
    #: Evaluate the test (and validation) ELBO every N epochs and after the last one;
    #: ``model.safetensors`` is written at those evaluations. Epochs in between log
    #: their training loss and speed only.
    eval_every: int = option(1, "evaluate the test (and validation) ELBO every N epochs and "
                             "after the last (default 1)", minimum=1)
    #: Stop when the validation ELBO has not improved for this many epochs (0: never).
    patience: int | None = option(
        None, "stop after N epochs without a better validation ELBO; 0: never (default from "
        "the data: never; for a table with a validation split about 600 steps)", minimum=0)
    #: ``constant`` or ``cosine`` (decay from ``lr`` to ``lr * lr_final_ratio``
    #: over the epochs, or over ``time_limit`` when that comes first).
    lr_schedule: str = option("constant", "learning-rate schedule (default constant)",
                              choices=LR_SCHEDULES)
    lr_final_ratio: float = option(0.0, "cosine schedule: final lr as a fraction of --lr "
                                   "(default 0)", minimum=0.0)
    #: Stop after the epoch during which this many minutes of wall time passed.
    time_limit: float | None = option(None, "stop after the epoch in which this many minutes "
                                      "have passed", minimum=0.0, above=True)
    #: Decay of an exponential moving average of the weights, updated after every
    #: step (e.g. 0.999: an average over the last ~1,000 steps). The averaged
    #: weights are the ones evaluated, chosen on validation and saved as the model;
    #: the raw weights go on training. ``None``: no average.
    ema: float | None = option(None, "evaluate and save an exponential moving average of the "
                               "weights with this decay per step (e.g. 0.999)", metavar="DECAY")
    #: Experiment trackers that receive the metrics, the configuration and the pictures:
    #: any of ``tensorboard``, ``mlflow``, ``wandb`` (:mod:`varfam.training.trackers`).
    track: list[str] = option(
        default_factory=list, help="experiment trackers, comma-separated: tensorboard, mlflow, "
        "wandb (each needs its extra: pip install 'varfam[trackers]')", metavar="NAMES")
    #: Where trackers write their files; ``None``: ``RUN/tracking``.
    track_dir: str | None = option(None, "where trackers write (default: RUN/tracking)",
                                   metavar="DIR")
    #: MLflow's tracking URI (a server, or a store); ``None``: a local store in ``track_dir``.
    track_uri: str | None = option(None, "MLflow tracking URI (default: a local store in the "
                                   "tracking folder)", metavar="URI")
    #: Weight of ``log q(y|x)`` per labelled example; ``None``: 0.1 · N / N_labelled,
    #: the choice of Kingma et al. (2014).
    alpha: float | None = option(None, "with --labelled: weight of log q(y|x) per labelled "
                                 "example (default 0.1 * N_train / N_labelled, as Kingma et "
                                 "al. 2014)", minimum=0.0)
    #: The share of every batch drawn from the labelled examples (the rest from the
    #: unlabelled ones); ``None``: the data's own share, but at least a tenth.
    labelled_ratio: float | None = option(
        None, "with --labelled: share of every batch drawn from the labelled examples "
        "(default: their share of the data, at least 0.1)", metavar="R", minimum=0.0,
        above=True)
    #: How a batch's labelled rows weigh against its unlabelled ones in the loss:
    #: ``"batch"``, as their share of the batch (labelled examples count as often as
    #: they are drawn); ``"data"``, as their share of the data (the paper's sum).
    labelled_weight: str = option(
        "batch", "with --labelled: weigh a batch's labelled rows as their share of the batch "
        "(default; they count as often as they are drawn) or of the data (the paper's sum "
        "over the data)", choices=LABELLED_WEIGHTS)
    #: Written by varfam, not an option: the settings above that were left unset and
    #: chosen from the data (:func:`varfam.training.defaults.resolved`), by field name,
    #: with ``objective_options.KEY`` for an objective option it added. The report shows
    #: them apart from what the user set, and the command that trains the run again
    #: leaves them to the data.
    chosen_from_data: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.epochs is not None and self.epochs < 1:
            raise VarfamError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise VarfamError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise VarfamError(f"lr must be positive, got {self.lr}")
        if self.binarize not in BINARIZE:
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
        if self.validation is not None and self.validation < 0:
            raise VarfamError(f"validation must be 0 or more, got {self.validation}")
        if self.patience is not None and self.patience < 0:
            raise VarfamError(f"patience must be 0 (never stop early) or more, got "
                              f"{self.patience}")
        if self.patience and self.validation == 0:
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
        if self.alpha is not None and not self.alpha >= 0:
            raise VarfamError(f"alpha must be 0 or more, got {self.alpha}")
        if self.labelled_ratio is not None and not 0.0 < self.labelled_ratio < 1.0:
            raise VarfamError(f"labelled_ratio must be in (0, 1), got {self.labelled_ratio}")
        if self.labelled_weight not in LABELLED_WEIGHTS:
            raise VarfamError(f"labelled_weight must be {' or '.join(LABELLED_WEIGHTS)}, "
                              f"got '{self.labelled_weight}'")


@dataclass
class RunConfig:
    """A run's full configuration: ``model``, ``data`` and ``train`` sections.

    A ``config.json`` written for a model saved without a :class:`TrainConfig`
    (``varfam.save(model, dir)``) has no ``train`` section: nothing is claimed about a training
    that varfam did not see. Reading it gives ``train_recorded = False`` and a
    default ``train`` that only supplies neutral settings (no binarization, seed 0);
    :func:`varfam.runs.run_dataset` then asks for the data by name.

    Files written before the ``data`` section existed keep the data's fields in
    ``train`` (``data``, ``data_key``, ``limit``, …); they are read into ``data``
    (:data:`DATA_FIELDS`), with a :class:`DeprecationWarning` for a TOML file.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: int = CONFIG_VERSION
    #: Whether ``train`` is what happened (``False``: it holds defaults and is not written).
    train_recorded: bool = field(default=True, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        t = self.train
        if self.data.labelled is None and (t.alpha is not None or t.labelled_ratio is not None
                                           or t.labelled_weight != "batch"):
            raise VarfamError("alpha, labelled_ratio and labelled_weight are settings of "
                              "semi-supervised training; add --labelled N")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        del out["train_recorded"]
        if not self.train_recorded:
            del out["train"], out["data"]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> RunConfig:
        return from_dict(cls, _with_data_section(data, where), where)

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        """Read and validate a TOML config file (``[model]``, ``[data]``, ``[train]``)."""
        raw = load_toml(path)
        moved = sorted(k for k in raw.get("train", {}) if k in DATA_FIELDS) \
            if isinstance(raw.get("train"), dict) else []
        if moved:
            warnings.warn(
                f"{path}: {', '.join(moved)} now belong in a [data] section "
                f"({', '.join(DATA_FIELDS[k] for k in moved)}); [train] still takes them "
                "for now", DeprecationWarning, stacklevel=2)
        return cls.from_dict(raw, str(path))

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
        elif cfg.data.labelled is not None and "labelled_weight" not in data["train"]:
            cfg.train.labelled_weight = "data"  # how runs written before the option weighed
        return cfg

    @classmethod
    def model_only(cls, model: ModelConfig) -> RunConfig:
        """A config that records the model and no training (``to_json`` leaves ``train`` out)."""
        cfg = cls(model=model)
        cfg.train_recorded = False
        return cfg


def _with_data_section(data: Any, where: str) -> Any:
    """``data`` with the data's fields of an older ``train`` section moved to ``data``."""
    if not isinstance(data, dict) or not isinstance(data.get("train"), dict):
        return data
    old = {k: v for k, v in data["train"].items() if k in DATA_FIELDS}
    if not old:
        return data
    section = dict(data.get("data") or {}) if isinstance(data.get("data"), dict) else {}
    for key, value in old.items():
        new = DATA_FIELDS[key]
        if new in section:
            raise VarfamError(f"{where}: {key} is given in both [train] and [data] "
                              f"({new}); keep the [data] one")
        section[new] = value
    train = {k: v for k, v in data["train"].items() if k not in DATA_FIELDS}
    return {**data, "train": train, "data": section}


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
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise VarfamError(
                f"unknown key '{key}' in {where}{suggest(key, fields)}; "
                f"known keys: {', '.join(fields)}"
            )
        tp = hints[key]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, f"{where}.{key}")
        else:
            kwargs[key] = _check_type(value, tp, f"{where}.{key}")
    return cls(**kwargs)


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(key: str) -> str:
    """``key`` as a TOML key: bare where it can be, else quoted."""
    return key if _BARE_KEY.match(key) else json.dumps(key)


def toml_value(value: Any) -> str:
    """``value`` (a config value: JSON-like) as TOML; ``None`` inside lists and tables is
    left out (TOML has no null, and a key left out takes its default).

    >>> toml_value({"a": 1, "b": [1.5, "x"], "c": None})
    '{ a = 1, b = [1.5, "x"] }'
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = [f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()
                 if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        inner = [toml_value(v) for v in value if v is not None]
        if any(isinstance(v, dict) for v in value):
            return "[\n" + "".join(f"  {v},\n" for v in inner) + "]"
        return "[" + ", ".join(inner) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into a plain dict (sections ``[model]``, ``[data]``, ``[train]``)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise VarfamError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise VarfamError(f"config file {path} is not valid TOML: {e}") from None
