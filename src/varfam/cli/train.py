"""``varfam train``: train a VAE from flags or a TOML config; a thin shell over the library."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from varfam.cli.common import (
    hidden_widths,
    key_value,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    tracker_names,
)
from varfam.errors import VarfamError

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


#: What a finished or started run leaves in its folder (removed by --overwrite).
_RUN_FILES = ("config.json", "model.safetensors", "checkpoint.safetensors", "metrics.jsonl",
              "report.html", "samples.png", "reconstructions.png", "interpolation.png",
              "latent.png", "trackers.json")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a VAE (default: the textbook model on mnist5k)")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    from varfam.config import LABELLED_WEIGHTS

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


def _train_config_from_args(args: argparse.Namespace):
    from varfam.config import RunConfig, load_toml

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

    from varfam.data.labels import configure_labels
    from varfam.data.tables import configure_model
    from varfam.model import VAE
    from varfam.runs.folder import run_dataset
    from varfam.training.callbacks import Announce, RunPictures, RunReport
    from varfam.training.distributed import launched_rank
    from varfam.training.loop import TrainingInterrupted, train

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
    stem = Path(cfg.train.data).stem if Path(cfg.train.data).exists() else cfg.train.data
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return cfg, Path("runs") / f"{stem}-{cfg.model.family}-{stamp}"


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
        from varfam.runs.checkpoint import RunLock

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
