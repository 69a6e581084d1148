"""The ``varfam`` command: thin subcommands that parse, build from config, call the library.

Errors a user can cause print one line ``varfam: error: …`` and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .errors import VarfamError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------- argument types
def _number(kind: type, minimum: float, inclusive: bool) -> Callable[[str], Any]:
    """An argparse type: a finite ``int``/``float`` above (or at) ``minimum``."""
    noun = "whole number" if kind is int else "number"
    bound = f"at least {minimum:g}" if inclusive else f"more than {minimum:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {noun}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a finite {noun} {bound}, got {text}")
        return value

    return parse


positive_int = _number(int, 1, inclusive=True)
nonnegative_int = _number(int, 0, inclusive=True)
positive_float = _number(float, 0.0, inclusive=False)
nonnegative_float = _number(float, 0.0, inclusive=True)


def hidden_widths(text: str) -> tuple[int, ...]:
    """``400`` or ``512,256``: positive widths separated by single commas."""
    parts = [t.strip() for t in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(
            f"'{text}' has an empty width between commas; write widths like 512,256"
        )
    try:
        widths = tuple(int(t) for t in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of widths"
        ) from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive whole numbers, got '{text}'")
    return widths


def tracker_names(text: str) -> list[str]:
    """``tensorboard,mlflow``: known tracker names, comma-separated."""
    from .config import TRACKERS
    from .errors import suggest

    names = [t.strip() for t in text.split(",")]
    for name in names:
        if name not in TRACKERS:
            raise argparse.ArgumentTypeError(
                f"unknown tracker '{name}'{suggest(name, TRACKERS)}; "
                f"choose from {', '.join(TRACKERS)}"
            )
    return list(dict.fromkeys(names))


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, true/false), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().replace("-", "_"), value


# ---------------------------------------------------------------- the parser
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


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from .config import LABELLED_WEIGHTS

    g = p.add_argument_group("data")
    g.add_argument("--data", help="dataset name (varfam list) or a .npy/.npz file or image folder")
    g.add_argument("--data-dir", help="folder holding a named dataset's files")
    g.add_argument("--key", dest="data_key", help="array name inside a .npz with several arrays")
    g.add_argument("--image-size", type=positive_int, help="resize folder images to SIZE×SIZE")
    g.add_argument("--binarize", choices=["none", "static", "dynamic"])
    g.add_argument("--limit", type=positive_int,
                   help="use only the first N training examples (and, unless --test-limit "
                        "is given, the first max(N/10, 1) test examples)")
    g.add_argument("--test-limit", type=positive_int, help="use only the first N test examples")
    g.add_argument("--label-column", metavar="NAME",
                   help="tables: the column of labels, kept out of the model")
    g.add_argument("--column-types", metavar="FILE",
                   help="tables: .toml or .csv giving column types (real, positive, count, "
                        "count-nb, categorical, ordinal) instead of the inferred ones")
    g.add_argument("--mask", metavar="FILE.npy|nan",
                   help="hide these values (a .npy of booleans, True = missing), or nan: the "
                        "data's NaN values are missing")
    g = p.add_argument_group("model")
    g.add_argument("--family", help="variational family q(z|x) (default: diagonal)")
    g.add_argument("--prior", help="prior p(z) (default: standard)")
    g.add_argument("--likelihood", help="likelihood p(x|z) (default: bernoulli)")
    g.add_argument("--latent-dim", type=positive_int, help="latent dimensions D (default: 20)")
    g.add_argument("--hidden", type=hidden_widths, help="hidden widths, e.g. 400 or 512,256")
    g.add_argument("--arch", help="network architecture: mlp, gated-mlp or conv (default: mlp)")
    g.add_argument("--condition", choices=["label"],
                   help="label: a conditional VAE, every part reads the example's class y "
                        "(sample a class with varfam sample RUN --label CLASS)")
    g.add_argument("--flow-steps", type=positive_int, help="flow length of flow families")
    g.add_argument("--rank", type=positive_int, help="rank of the lowrank family")
    g.add_argument("--components", type=positive_int, help="mixture components of a family")
    g.add_argument("--temperature", type=positive_float, help="relaxation temperature")
    g.add_argument("--family-option", action="append", type=key_value, default=[],
                   metavar="KEY=VALUE", help="any option of the family (repeatable)")
    g.add_argument("--prior-option", action="append", type=key_value, default=[],
                   metavar="KEY=VALUE", help="any option of the prior (repeatable)")
    g.add_argument("--likelihood-option", action="append", type=key_value, default=[],
                   metavar="KEY=VALUE", help="any option of the likelihood (repeatable)")
    g = p.add_argument_group("objective")
    g.add_argument("--objective", help="training objective: elbo or iwae (default: elbo)")
    g.add_argument("--beta", type=nonnegative_float, help="KL weight (beta-VAE)")
    g.add_argument("--warmup-epochs", type=nonnegative_float, help="KL warm-up length in epochs")
    g.add_argument("--free-bits", type=nonnegative_float, help="free bits, nats per dimension")
    g.add_argument("--k", type=positive_int, help="importance samples of iwae")
    g.add_argument("--estimator", help="iwae gradient estimator: plain, stl or dreg")
    g.add_argument("--objective-option", action="append", type=key_value, default=[],
                   metavar="KEY=VALUE", help="any option of the objective (repeatable)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, help="epochs (default: 30)")
    g.add_argument("--batch-size", type=positive_int, help="batch size (default: 128)")
    g.add_argument("--lr", type=positive_float, help="Adam learning rate (default: 1e-3)")
    g.add_argument("--seed", type=nonnegative_int, help="random seed (default: 0)")
    g.add_argument("--device", help="auto, cpu or cuda (default: auto)")
    g.add_argument("--precision", choices=["auto", "bf16", "fp32"],
                   help="training precision (default: auto = bf16 where fast; eval is fp32)")
    g.add_argument("--validation", type=nonnegative_int,
                   help="hold out the last N training examples for validation; the saved "
                        "weights are then the best on validation")
    g.add_argument("--eval-every", type=positive_int,
                   help="evaluate the test (and validation) ELBO every N epochs and after "
                        "the last (default 1)")
    g.add_argument("--patience", type=positive_int,
                   help="stop after N epochs without a better validation ELBO")
    g.add_argument("--lr-schedule", choices=["constant", "cosine"],
                   help="learning-rate schedule (default constant)")
    g.add_argument("--lr-final-ratio", type=nonnegative_float,
                   help="cosine schedule: final lr as a fraction of --lr (default 0)")
    g.add_argument("--time-limit", type=positive_float,
                   help="stop after the epoch in which this many minutes have passed")
    g.add_argument("--ema", type=float, metavar="DECAY",
                   help="evaluate and save an exponential moving average of the weights "
                        "with this decay per step (e.g. 0.999)")
    g.add_argument("--labelled", type=positive_int, metavar="N",
                   help="semi-supervised (M2): keep the labels of N training examples, "
                        "balanced per class and chosen with the seed, hide the rest; the model "
                        "learns a classifier q(y|x) (varfam classify RUN); with --alpha 50 "
                        "--beta 2 it beat its classifier alone on Fashion-MNIST "
                        "(docs/results.md, Labels)")
    g.add_argument("--alpha", type=nonnegative_float,
                   help="with --labelled: weight of log q(y|x) per labelled example "
                        "(default 0.1 * N_train / N_labelled, as Kingma et al. 2014)")
    g.add_argument("--labelled-ratio", type=positive_float, metavar="R",
                   help="with --labelled: share of every batch drawn from the labelled examples "
                        "(default: their share of the data, at least 0.1)")
    g.add_argument("--labelled-weight", choices=LABELLED_WEIGHTS,
                   help="with --labelled: weigh a batch's labelled rows as their share of the "
                        "batch (default; they count as often as they are drawn) or of the "
                        "data (the paper's sum over the data)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="compile the training step with torch.compile (faster for long runs; "
                        "10-20 s to compile)")
    g.add_argument("--compile-mode", choices=["default", "max-autotune"],
                   help="with --compile: max-autotune times several kernels per matrix product "
                        "and keeps the fastest (no consistent gain on the development CPU; "
                        "see docs/performance.md)")
    g.add_argument("--skip-nonfinite", action=argparse.BooleanOptionalAction, default=None,
                   help="skip batches whose loss is nan/inf (counted in metrics.jsonl) "
                        "instead of stopping")
    g = p.add_argument_group("run folder and output")
    g.add_argument("--out", help="run folder (default: runs/<dataset>-<family>-<time>)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its weights, metrics and pictures "
                        "are deleted first)")
    g.add_argument("--config", help="TOML file with [model] and [train] sections")
    g.add_argument("--resume", metavar="RUN", help="continue a run from its last checkpoint")
    g.add_argument("--quiet", action=argparse.BooleanOptionalAction, default=False,
                   help="print only the final summary line (no progress, no epoch lines)")
    g.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="write report.html at the end (--no-report: skip it, write it later "
                        "with `varfam report`)")
    g.add_argument("--track", type=tracker_names, metavar="NAMES",
                   help="experiment trackers, comma-separated: tensorboard, mlflow, wandb "
                        "(each needs its extra: pip install 'varfam[trackers]')")
    g.add_argument("--track-dir", metavar="DIR",
                   help="where trackers write (default: RUN/tracking)")
    g.add_argument("--track-uri", metavar="URI",
                   help="MLflow tracking URI (default: a local store in the tracking folder)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="varfam",
        description="Variational autoencoders whose variational families are first-class.",
    )
    from . import __version__

    parser.add_argument("-V", "--version", action="version", version=f"varfam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a VAE (default: the textbook model on mnist5k)")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="decode draws from the prior")
    p.add_argument("run")
    p.add_argument("-n", type=positive_int,
                   help="how many (default 64; with --label all, per class: default 8)")
    p.add_argument("--label", metavar="CLASS",
                   help="a run conditioned on labels: the class to draw (index or name), or "
                        "'all' for a grid with one named row per class")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.png (grid) or FILE.npy (array); for a table run FILE.csv, .tsv "
                        "or .parquet (synthetic rows in the original units)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("reconstruct", help="test inputs beside reconstructions from several z")
    p.add_argument("run")
    p.add_argument("-o", "--output", required=True, help="FILE.png or FILE.npy")
    p.add_argument("-n", type=positive_int, default=8, help="how many inputs (default 8)")
    p.add_argument("--draws", type=positive_int, default=4, help="draws of z per input")
    p.add_argument("--data", help="another dataset's test split")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("interpolate", help="decode the latent path between pairs of test images")
    p.add_argument("run")
    p.add_argument("-o", "--output", required=True, help="FILE.png or FILE.npy")
    p.add_argument("--pairs", type=positive_int, default=4)
    p.add_argument("--steps", type=positive_int, default=10)
    p.add_argument("--data", help="another dataset's test split")
    p.set_defaults(func=cmd_interpolate)

    p = sub.add_parser("encode", help="latent means and scales of a dataset's examples")
    p.add_argument("run")
    p.add_argument("--data", help="dataset name or path (default: the run's)")
    p.add_argument("--split", choices=["all", "train", "test"], default="all",
                   help="which examples: the training split, the test split, or all, training "
                        "first (default all)")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.npy: array (N, 2, D) of [mean, scale]; FILE.npz: loc, scale, "
                        "index (each example's position in the data set), split, and labels "
                        "where the data has them")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="decode latents from a .npy or .npz file to images")
    p.add_argument("run")
    p.add_argument("--latents", required=True,
                   help="FILE.npy of shape (N, D) (or encode's (N, 2, D)), or encode's FILE.npz "
                        "(its 'loc' array)")
    p.add_argument("-o", "--output", required=True, help="FILE.png or FILE.npy")
    p.add_argument("--label", metavar="CLASS",
                   help="a run conditioned on labels: the class to decode with (index or name)")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("list", help="every registered dataset, family, prior, likelihood, …")
    p.set_defaults(func=cmd_list)

    from .commands import register_all

    register_all(sub)
    return parser


# ---------------------------------------------------------------- train
def _train_config_from_args(args: argparse.Namespace):
    from .config import RunConfig, load_toml

    base: dict[str, Any] = {}
    if args.config:
        base = load_toml(args.config)
    cfg = RunConfig.from_dict(base, args.config or "config")
    m, t = cfg.model, cfg.train
    for name in ("family", "prior", "likelihood", "latent_dim", "hidden", "arch", "condition"):
        if getattr(args, name) is not None:
            setattr(m, name, getattr(args, name))
    for name in ("data", "data_dir", "data_key", "image_size", "binarize", "limit", "test_limit",
                 "objective", "label_column", "column_types", "mask",
                 "epochs", "batch_size", "lr", "seed", "device", "precision", "skip_nonfinite",
                 "compile", "compile_mode", "eval_every", "validation", "patience", "lr_schedule",
                 "lr_final_ratio", "time_limit", "ema", "track", "track_dir", "track_uri",
                 "labelled", "alpha", "labelled_ratio", "labelled_weight"):
        if getattr(args, name) is not None:
            setattr(t, name, getattr(args, name))
    for flag, (section, key) in _PART_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            owner = t if section == "objective_options" else m
            getattr(owner, section)[key] = value
    for flag, owner, section in (("family_option", m, "family_options"),
                                 ("prior_option", m, "prior_options"),
                                 ("likelihood_option", m, "likelihood_options"),
                                 ("objective_option", t, "objective_options")):
        for key, value in getattr(args, flag):
            getattr(owner, section)[key] = value
    # re-validate after the command-line overrides
    return RunConfig.from_dict(cfg.to_dict(), "command line")


def cmd_train(args: argparse.Namespace) -> int:
    """Train from the command line: everything that can be checked is checked before the
    run folder is made or anything is printed; then the library trains with callbacks."""
    import torch

    from .callbacks import Announce, RunPictures, RunReport
    from .data.labels import configure_labels
    from .data.tables import configure_model
    from .distributed import launched_rank
    from .model import VAE
    from .runs import run_dataset
    from .train import TrainingInterrupted, train

    cfg, out = _train_run_config(args)
    data = run_dataset(cfg)  # loaded once, for training, pictures and the report
    cfg.model.data_shape = data.data_shape
    columns = configure_model(cfg.model, data, cfg.train)  # tables and masks: the likelihood
    data = configure_labels(cfg.model, cfg.train, data)  # classes; labels hidden but N
    torch.manual_seed(cfg.train.seed)
    model = VAE.build(cfg.model)
    main_rank = launched_rank() == 0  # under torchrun only rank 0 prints and writes
    if not args.resume and main_rank:
        _clear_run_folder(out, args.overwrite)
    header = (f"training {cfg.model.family} VAE on {cfg.train.data} "
              f"({data.train.shape[0]} train / {data.test.shape[0]} test, shape "
              f"{data.data_shape}) → {out}" + (f"\n{columns}" if columns else ""))
    callbacks = [*([] if args.quiet else [Announce(header)]), RunPictures(),
                 *([RunReport()] if args.report else [])]
    try:
        result = train(model, data, cfg.train, out=out, resume=bool(args.resume),
                       progress=not args.quiet, callbacks=callbacks)
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
    from .checkpoint import load_run_config

    if args.resume:
        cfg = load_run_config(args.resume)
        for name in ("epochs", "skip_nonfinite", "track", "track_dir", "track_uri"):
            if getattr(args, name) is not None:
                setattr(cfg.train, name, getattr(args, name))
        return cfg, Path(args.resume)
    cfg = _train_config_from_args(args)
    if args.out:
        return cfg, Path(args.out)
    stem = Path(cfg.train.data).stem if Path(cfg.train.data).exists() else cfg.train.data
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return cfg, Path("runs") / f"{stem}-{cfg.model.family}-{stamp}"


#: What a finished or started run leaves in its folder (removed by --overwrite).
_RUN_FILES = ("config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl",
              "report.html", "samples.png", "reconstructions.png", "interpolation.png",
              "latent.png", "trackers.json")


def _clear_run_folder(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that is a file or holds a run (unless ``overwrite``: then the old
    run's files are deleted, so nothing of it can be mistaken for the new one)."""
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise VarfamError(f"--out {out}: {parent} is a file, not a folder; "
                              "choose another --out")
    if not out.is_dir():
        return
    if (out / ".lock").exists():  # a training of this folder still running says so first
        from .checkpoint import RunLock

        with RunLock(out):
            pass
    present = [name for name in _RUN_FILES if (out / name).exists()]
    if present and not overwrite:
        raise VarfamError(
            f"--out {out} already holds a run ({present[0]}); continue it with "
            f"`varfam train --resume {out}`, choose a new --out, or pass --overwrite to replace it"
        )
    for name in present:
        (out / name).unlink()


# ---------------------------------------------------------------- inspection
def open_run_for_command(run: str):
    """Load a run for a subcommand (model on CPU in eval mode, and its config)."""
    from .runs import open_run

    return open_run(run)


def write_images(images, output: str, ncol: int) -> None:
    import numpy as np

    from .viz import save_grid

    path = _image_output(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npy":
        np.save(path, images.detach().cpu().numpy())
    else:
        save_grid(images, path, ncol=ncol)
    print(path)


def _image_output(output: str) -> Path:
    """``output`` as a path if it names a picture or an array file (checked before any work)."""
    path = Path(output)
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".npy"):
        raise VarfamError(
            f"output {output} must end in .png, .jpg or .jpeg (a picture grid) or .npy (the array)"
        )
    return path


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def cmd_sample(args: argparse.Namespace) -> int:
    from .data.tables import TABLE_SUFFIXES

    if Path(args.output).suffix.lower() in TABLE_SUFFIXES:  # synthetic rows of a table run
        from .data.tables import write_frame
        from .impute import sample_table

        model, _ = open_run_for_command(args.run)
        print(write_frame(sample_table(model, args.n, seed=args.seed), args.output))
        return 0
    model, _ = open_run_for_command(args.run)
    _seeded(args.seed)
    if args.label is None:
        write_images(model.sample(args.n or 64), args.output, ncol=8)
        return 0
    _needs_condition(model, "--label")
    if args.label != "all":
        write_images(model.sample(args.n or 64, args.label), args.output, ncol=8)
        return 0
    from .viz import class_grid, save_class_grid

    per_class = args.n or 8
    if _image_output(args.output).suffix.lower() == ".npy":
        write_images(class_grid(model, per_class), args.output, ncol=per_class)
    else:
        print(save_class_grid(model, args.output, per_class))
    return 0


def _needs_condition(model, flag: str) -> None:
    if not model.uses_labels:
        raise VarfamError(f"{flag} needs a run conditioned on labels "
                          "(varfam train --condition label)")


def data_labels(model, labels):
    """The labels a run conditioned on labels reads (``None`` for other runs); a
    :class:`VarfamError` when such a run meets data without labels and has no classifier."""
    if not model.uses_labels:
        return None
    if labels is None and model.condition.classifier is None:
        raise VarfamError("this run is conditioned on labels, but the data has none; "
                          "use labelled data (class sub-folders, or labels in a .npz)")
    return labels


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .runs import run_test_data
    from .viz import reconstruction_grid

    model, cfg = open_run_for_command(args.run)
    x, labels = run_test_data(cfg, args.data)
    y = data_labels(model, labels)
    _seeded(args.seed)
    images, per_row = reconstruction_grid(model, x[: args.n], draws=args.draws,
                                          y=None if y is None else y[: args.n])
    write_images(images, args.output, ncol=per_row)
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .runs import run_test_data
    from .viz import interpolation_grid

    model, cfg = open_run_for_command(args.run)
    x, labels = run_test_data(cfg, args.data)
    y = data_labels(model, labels)
    n = min(2 * args.pairs, x.shape[0] - x.shape[0] % 2)
    if n < 2:
        raise VarfamError("interpolation needs at least two test examples")
    images = interpolation_grid(model, x[:n], steps=args.steps, y=None if y is None else y[:n])
    write_images(images, args.output, args.steps)
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .runs import run_dataset, scored_inputs

    path = Path(args.output)
    if path.suffix not in (".npy", ".npz"):
        raise VarfamError(f"output {args.output} must end in .npy or .npz")
    model, cfg = open_run_for_command(args.run)
    ds = run_dataset(cfg, args.data)
    if tuple(ds.data_shape) != model.data_shape:
        raise VarfamError(
            f"data of shape {tuple(ds.data_shape)} does not fit this run's {model.data_shape}"
        )
    parts = [p for p in ("train", "test") if args.split in (p, "all")]
    locs, scales, labels, index, split = [], [], [], [], []
    for part in parts:
        x = scored_inputs(ds, cfg.train, part)
        n = x.shape[0]
        given = data_labels(model, getattr(ds, f"{part}_labels"))  # a run conditioned on labels
        with torch.no_grad():
            for i in range(0, n, 1000):
                q = model.encode(x[i : i + 1000], None if given is None else given[i : i + 1000])
                try:
                    loc, scale = q.mean, q.stddev
                except NotImplementedError:  # no closed form: Monte Carlo with 256 draws
                    z = q.sample((256,))
                    loc, scale = z.mean(0), z.std(0)
                locs.append(loc)
                scales.append(scale)
        y = getattr(ds, f"{part}_labels")
        labels.append(None if y is None else y.numpy())
        where = getattr(ds, f"{part}_index")
        index.append(np.arange(n) if where is None else where.numpy())
        split.append(np.full(n, part))
    loc, scale = torch.cat(locs).numpy(), torch.cat(scales).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        extra = {} if any(y is None for y in labels) else {"labels": np.concatenate(labels)}
        np.savez(path, loc=loc, scale=scale, index=np.concatenate(index).astype(np.int64),
                 split=np.concatenate(split), **extra)
    else:
        np.save(path, np.stack([loc, scale], 1))
    print(path)
    return 0


def read_latents(path: str, latent_dim: int):
    """Latents (N, D) from a ``.npy`` (N, D) or encode's (N, 2, D), or encode's ``.npz``
    (its ``loc``; or its only array). Finite numbers only; a :class:`VarfamError` otherwise."""
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise VarfamError(f"latents file {path} does not exist") from None
    except (ValueError, OSError, EOFError) as e:
        raise VarfamError(f"cannot read {path} as a .npy or .npz array ({e})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if "loc" not in names and len(names) != 1:
                raise VarfamError(
                    f"{path} holds no 'loc' array (the one varfam encode writes) but "
                    f"{', '.join(names) or 'no arrays'}; save the latents as 'loc'"
                )
            try:
                z = loaded["loc" if "loc" in names else names[0]]
            except ValueError as e:  # an object array needs pickle
                raise VarfamError(f"cannot read {path}: {e}") from None
    else:
        z = loaded
        if z.ndim == 3 and z.shape[1] == 2:  # encode's .npy: [mean, scale] per example
            z = z[:, 0]
    if z.dtype.kind not in "uif":
        raise VarfamError(f"latents in {path} have dtype {z.dtype}; they must be numbers")
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise VarfamError(
            f"latents must have shape (N, {latent_dim}) for this run, got {z.shape}"
        )
    if not np.isfinite(z).all():
        bad = int((~np.isfinite(z)).any(1).sum())
        raise VarfamError(
            f"{path} holds non-finite latents (NaN or inf) in {bad} of {z.shape[0]} rows; "
            "decode only finite numbers"
        )
    return z


def cmd_decode(args: argparse.Namespace) -> int:
    import torch

    _image_output(args.output)
    model, _ = open_run_for_command(args.run)
    z = read_latents(args.latents, model.latent_dim)
    if args.label is not None:
        _needs_condition(model, "--label")
    elif model.uses_labels:
        raise VarfamError("this run is conditioned on labels: give the class to decode with, "
                          "--label CLASS")
    with torch.no_grad():
        images = model.decode(torch.as_tensor(z, dtype=torch.float32), args.label).mean
    write_images(images, args.output, ncol=8)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from . import (  # noqa: F401
        families,
        likelihoods,
        nets,  # noqa: F401
        objectives,
        priors,
    )
    from .data import named  # noqa: F401
    from .registry import ALL_REGISTRIES

    for kind, registry in ALL_REGISTRIES.items():
        print(f"{kind}:")
        for entry in registry:
            ref = f"  [{entry.reference}]" if entry.reference else ""
            print(f"  {entry.name:22s} {entry.description}{ref}")
    return 0


# ---------------------------------------------------------------- entry point
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        from .hub import resolve_command_runs

        resolve_command_runs(args)  # hf://USER/REPO runs → local folders
        return func(args)
    except VarfamError as e:
        print(f"varfam: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("varfam: interrupted", file=sys.stderr)
        return 130
