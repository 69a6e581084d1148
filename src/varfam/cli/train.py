"""``varfam train``: train a VAE from flags or a TOML config; a thin shell over the library.

The flags are generated from the config dataclasses (:func:`varfam.config.option`):
one per field of :class:`~varfam.config.DataConfig`, :class:`~varfam.config.ModelConfig`
and :class:`~varfam.config.TrainConfig` that the command line sets, with the field's
help, choices and bounds. The command builds a :class:`~varfam.config.RunConfig` (a
TOML file, then the flags) and makes one call, :func:`varfam.train_from_config`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any

from varfam.cli.common import (
    hidden_widths,
    key_value,
    nonnegative_float,
    number,
    positive_float,
    positive_int,
    tracker_names,
)
from varfam.config import DataConfig, ModelConfig, RunConfig, TrainConfig

if typing.TYPE_CHECKING:  # pragma: no cover
    from varfam.training.callbacks import TrainingRun

#: The config sections the flags set, in the order ``--help`` shows them.
SECTIONS: tuple[tuple[str, type], ...] = (
    ("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))

#: family/objective flags → (section, option key)
_PART_FLAGS: dict[str, tuple[str, str]] = {
    "flow_steps": ("family_options", "flow_steps"),
    "rank": ("family_options", "rank"),
    "components": ("family_options", "components"),
    "temperature": ("family_options", "temperature"),
    "beta": ("objective_options", "beta"),
    "warmup_epochs": ("objective_options", "warmup_epochs"),
    "free_bits": ("objective_options", "free_bits"),
    "k": ("objective_options", "k"),
    "estimator": ("objective_options", "estimator"),
}




def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a VAE (default: the textbook model on mnist5k)")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)


def config_flags(cls: type) -> list[dataclasses.Field]:
    """The fields of config dataclass ``cls`` that ``varfam train`` takes as flags."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli")]


def _flag_type(f: dataclasses.Field, tp: Any) -> dict[str, Any]:
    """argparse keywords for field ``f`` of type ``tp`` (its bounds and choices)."""
    meta = f.metadata
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) else tp
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(base) is tuple:
        return {"type": hidden_widths}
    if typing.get_origin(base) is list:
        return {"type": tracker_names}
    if base in (int, float):
        lowest = meta.get("minimum")
        if lowest is None:
            return {"type": base}
        return {"type": number(base, lowest, inclusive=not meta.get("above"))}
    return {"choices": meta["choices"]} if meta.get("choices") else {}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    for section, cls in SECTIONS:
        g = p.add_argument_group(section)
        hints = typing.get_type_hints(cls)
        for f in config_flags(cls):
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            extra = {"metavar": f.metadata["metavar"]} if f.metadata.get("metavar") else {}
            g.add_argument(flag, dest=f.name, default=None, help=f.metadata.get("help"),
                           **_flag_type(f, hints[f.name]), **extra)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    _add_config_flags(p)
    g = p.add_argument_group("part options")
    g.add_argument("--flow-steps", type=positive_int, help="flow length of flow families")
    g.add_argument("--rank", type=positive_int, help="rank of the lowrank family")
    g.add_argument("--components", type=positive_int, help="mixture components of a family")
    g.add_argument("--temperature", type=positive_float, help="relaxation temperature")
    g.add_argument("--beta", type=nonnegative_float, help="KL weight (beta-VAE)")
    g.add_argument("--warmup-epochs", type=nonnegative_float, help="KL warm-up length in epochs")
    g.add_argument("--free-bits", type=nonnegative_float, help="free bits, nats per dimension")
    g.add_argument("--k", type=positive_int, help="importance samples of iwae")
    g.add_argument("--estimator", help="iwae gradient estimator: plain, stl or dreg")
    for part in ("family", "prior", "likelihood", "objective"):
        g.add_argument(f"--{part}-option", action="append", type=key_value, default=[],
                       metavar="KEY=VALUE", help=f"any option of the {part} (repeatable)")
    g = p.add_argument_group("run folder and output")
    g.add_argument("--out", help="run folder (default: runs/<dataset>-<family>-<time>)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its weights, metrics and pictures "
                        "are deleted first)")
    g.add_argument("--config", help="TOML file with [model], [data] and [train] sections")
    g.add_argument("--resume", metavar="RUN", help="continue a run from its last checkpoint")
    g.add_argument("--quiet", action=argparse.BooleanOptionalAction, default=False,
                   help="print only the final summary line (no progress, no epoch lines)")
    g.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="write report.html at the end (--no-report: skip it, write it later "
                        "with `varfam report`)")


def _train_config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's :class:`RunConfig`: the TOML file (or the defaults), then every flag given."""
    cfg = RunConfig.from_toml(args.config) if args.config else RunConfig()
    d = cfg.to_dict()
    for section, cls in SECTIONS:
        for f in config_flags(cls):
            value = getattr(args, f.name)
            if value is not None:
                d[section][f.name] = list(value) if isinstance(value, tuple) else value
    for flag, (section, key) in _PART_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            d["train" if section == "objective_options" else "model"][section][key] = value
    for part in ("family", "prior", "likelihood", "objective"):
        owner = d["train" if part == "objective" else "model"]
        for key, value in getattr(args, f"{part}_option"):
            owner[f"{part}_options"][key] = value
    return RunConfig.from_dict(d, "command line")  # validated after the overrides


def training_header(run: TrainingRun) -> str:
    """What is trained on what (printed once every check has passed and training starts)."""
    from varfam.data.tables import data_summary

    m, data = run.model.config, run.data
    source = data.config.source if data.config is not None else data.name
    summary = data_summary(m, data) if m is not None else None
    return (f"training {m.family if m is not None else 'custom'} VAE on {source} "
            f"({data.train.shape[0]} train / {data.test.shape[0]} test, shape "
            f"{data.data_shape}) → {run.run_dir}" + (f"\n{summary}" if summary else ""))


def cmd_train(args: argparse.Namespace) -> int:
    """Train from the command line: one call, :func:`varfam.train_from_config`. Everything
    that can be checked is checked before the run folder is touched or anything printed."""
    from varfam.reporting.callbacks import RunPictures, RunReport
    from varfam.training.callbacks import Announce
    from varfam.training.distributed import launched_rank
    from varfam.training.loop import TrainingInterrupted, train_from_config

    cfg, out = _train_run_config(args)
    main_rank = launched_rank() == 0  # under torchrun only rank 0 prints and writes
    callbacks = [*([] if args.quiet else [Announce(training_header)]), RunPictures(),
                 *([RunReport()] if args.report else [])]
    try:
        result = train_from_config(cfg, out=out, resume=bool(args.resume),
                                   overwrite=args.overwrite, progress=not args.quiet,
                                   callbacks=callbacks)
    except TrainingInterrupted as e:  # SIGINT/SIGTERM: the state is saved; exit 130/143
        if main_rank:
            print(f"varfam: {e}", file=sys.stderr)
        return e.exit_code
    if main_rank:
        last = result.history[-1] if result.history else {}
        print(f"test ELBO {last.get('test_elbo', float('nan')):.2f} nats (the last epoch's "
              f"evaluation) after {last.get('epoch', 0)} epochs "
              f"({last.get('wall_time', 0):.1f} s); results in {out}")
    return 0


def _train_run_config(args: argparse.Namespace):
    """The run's configuration and folder: from the resumed run, or from the options."""
    from varfam.runs.checkpoint import load_run_config

    if args.resume:
        cfg = load_run_config(args.resume)
        for name in ("epochs", "skip_nonfinite", "track", "track_dir", "track_uri"):
            if getattr(args, name) is not None:
                setattr(cfg.train, name, getattr(args, name))
        return cfg, Path(args.resume)
    cfg = _train_config_from_args(args)
    if args.out:
        return cfg, Path(args.out)
    source = str(cfg.data.source)
    stem = Path(source).stem if Path(source).exists() else source
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return cfg, Path("runs") / f"{stem}-{cfg.model.family}-{stamp}"
