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
    try:
        widths = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of widths"
        ) from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive whole numbers, got '{text}'")
    return widths


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
    g = p.add_argument_group("data")
    g.add_argument("--data", help="dataset name (varfam list) or a .npy/.npz file or image folder")
    g.add_argument("--data-dir", help="folder holding a named dataset's files")
    g.add_argument("--key", dest="data_key", help="array name inside a .npz with several arrays")
    g.add_argument("--image-size", type=positive_int, help="resize folder images to SIZE×SIZE")
    g.add_argument("--binarize", choices=["none", "static", "dynamic"])
    g.add_argument("--limit", type=positive_int, help="use only the first N training examples")
    g = p.add_argument_group("model")
    g.add_argument("--family", help="variational family q(z|x) (default: diagonal)")
    g.add_argument("--prior", help="prior p(z) (default: standard)")
    g.add_argument("--likelihood", help="likelihood p(x|z) (default: bernoulli)")
    g.add_argument("--latent-dim", type=positive_int, help="latent dimensions D (default: 20)")
    g.add_argument("--hidden", type=hidden_widths, help="hidden widths, e.g. 400 or 512,256")
    g.add_argument("--arch", help="network architecture: mlp or conv (default: mlp)")
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
    g.add_argument("--out", help="run folder (default: runs/<dataset>-<family>-<time>)")
    g.add_argument("--config", help="TOML file with [model] and [train] sections")
    g.add_argument("--resume", metavar="RUN", help="continue a run from its last checkpoint")
    g.add_argument("--compile", action="store_true", default=None,
                   help="compile the training step with torch.compile (faster for long runs; "
                        "10-20 s to compile)")
    g.add_argument("--compile-mode", choices=["default", "max-autotune"],
                   help="with --compile: max-autotune times several kernels per matrix product "
                        "and keeps the fastest (no consistent gain on the development CPU; "
                        "see docs/performance.md)")
    g.add_argument("--skip-nonfinite", action="store_true", default=None,
                   help="skip batches whose loss is nan/inf (counted in metrics.jsonl) "
                        "instead of stopping")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--no-report", action="store_true",
                   help="skip report.html at the end (write it later with `varfam report`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="varfam",
        description="Variational autoencoders whose variational families are first-class.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train a VAE (default: the textbook model on mnist5k)")
    _add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="decode draws from the prior")
    p.add_argument("run")
    p.add_argument("-n", type=positive_int, default=64, help="how many (default 64)")
    p.add_argument("-o", "--output", required=True, help="FILE.png (grid) or FILE.npy (array)")
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

    p = sub.add_parser("encode", help="latent means and scales of a dataset's test split")
    p.add_argument("run")
    p.add_argument("--data", help="dataset name or path (default: the run's)")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.npy: array (N, 2, D) of [mean, scale]; FILE.npz: loc, scale, labels")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="decode latents from a .npy file to images")
    p.add_argument("run")
    p.add_argument("--latents", required=True,
                   help="FILE.npy of shape (N, D) (or encode's (N, 2, D))")
    p.add_argument("-o", "--output", required=True, help="FILE.png or FILE.npy")
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
    for name in ("family", "prior", "likelihood", "latent_dim", "hidden", "arch"):
        if getattr(args, name) is not None:
            setattr(m, name, getattr(args, name))
    for name in ("data", "data_dir", "data_key", "image_size", "binarize", "limit", "objective",
                 "epochs", "batch_size", "lr", "seed", "device", "precision", "skip_nonfinite",
                 "compile", "compile_mode", "eval_every", "validation", "patience", "lr_schedule",
                 "lr_final_ratio", "time_limit", "ema"):
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
    import torch

    from .checkpoint import load_run_config
    from .distributed import launched_rank
    from .model import VAE
    from .runs import run_dataset
    from .train import TrainingInterrupted, train
    from .viz import write_run_pictures

    main_rank = launched_rank() == 0  # under torchrun only rank 0 prints and writes
    if args.resume:
        cfg = load_run_config(args.resume)
        if args.epochs is not None:
            cfg.train.epochs = args.epochs
        if args.skip_nonfinite:
            cfg.train.skip_nonfinite = True
        out = Path(args.resume)
    else:
        cfg = _train_config_from_args(args)
        out = None
    data = run_dataset(cfg)
    cfg.model.data_shape = data.data_shape
    torch.manual_seed(cfg.train.seed)
    model = VAE.build(cfg.model)
    if out is None:
        stem = Path(cfg.train.data).stem if Path(cfg.train.data).exists() else cfg.train.data
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(args.out) if args.out else Path("runs") / f"{stem}-{cfg.model.family}-{stamp}"
    progress = not args.quiet and sys.stderr.isatty()
    if main_rank:
        print(f"training {cfg.model.family} VAE on {cfg.train.data} "
              f"({data.train.shape[0]} train / {data.test.shape[0]} test, shape "
              f"{data.data_shape}) → {out}", file=sys.stderr)
    try:
        result = train(model, data, cfg.train, out=out, resume=bool(args.resume),
                       progress=progress)
    except TrainingInterrupted as e:  # SIGINT/SIGTERM: the state is saved; exit 130/143
        if main_rank:
            print(f"varfam: {e}", file=sys.stderr)
        return e.exit_code
    if not main_rank:
        return 0
    from .runs import run_test_data

    test_x, labels = run_test_data(cfg)
    write_run_pictures(result.model, test_x, labels, out, seed=cfg.train.seed)
    if not args.no_report:
        from .report import write_report

        write_report(out, data=data, seed=cfg.train.seed)
    last = result.history[-1] if result.history else {}
    print(f"test ELBO {last.get('test_elbo', float('nan')):.2f} nats after "
          f"{last.get('epoch', 0)} epochs ({last.get('wall_time', 0):.1f} s); results in {out}")
    return 0


# ---------------------------------------------------------------- inspection
def open_run_for_command(run: str):
    """Load a run for a subcommand (model on CPU in eval mode, and its config)."""
    from .runs import open_run

    return open_run(run)


def write_images(images, output: str, ncol: int) -> None:
    import numpy as np

    from .viz import save_grid

    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, images.detach().cpu().numpy())
    elif path.suffix.lower() in (".png", ".jpg", ".jpeg"):
        save_grid(images, path, ncol=ncol)
    else:
        raise VarfamError(f"output {output} must end in .png or .npy")
    print(path)


def _seeded(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def cmd_sample(args: argparse.Namespace) -> int:
    model, _ = open_run_for_command(args.run)
    _seeded(args.seed)
    write_images(model.sample(args.n), args.output, ncol=8)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from .runs import run_test_data
    from .viz import reconstruction_grid

    model, cfg = open_run_for_command(args.run)
    x, _ = run_test_data(cfg, args.data)
    _seeded(args.seed)
    images, per_row = reconstruction_grid(model, x[: args.n], draws=args.draws)
    write_images(images, args.output, ncol=per_row)
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    from .runs import run_test_data
    from .viz import interpolation_grid

    model, cfg = open_run_for_command(args.run)
    x, _ = run_test_data(cfg, args.data)
    n = min(2 * args.pairs, x.shape[0] - x.shape[0] % 2)
    if n < 2:
        raise VarfamError("interpolation needs at least two test examples")
    write_images(interpolation_grid(model, x[:n], steps=args.steps), args.output, args.steps)
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from .runs import run_test_data

    model, cfg = open_run_for_command(args.run)
    x, labels = run_test_data(cfg, args.data)
    if tuple(x.shape[1:]) != model.data_shape:
        raise VarfamError(
            f"data of shape {tuple(x.shape[1:])} does not fit this run's {model.data_shape}"
        )
    locs, scales = [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], 1000):
            q = model.encode(x[i : i + 1000])
            try:
                loc, scale = q.mean, q.stddev
            except NotImplementedError:  # no closed form: Monte Carlo with 256 draws
                z = q.sample((256,))
                loc, scale = z.mean(0), z.std(0)
            locs.append(loc)
            scales.append(scale)
    loc, scale = torch.cat(locs).numpy(), torch.cat(scales).numpy()
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        extra = {} if labels is None else {"labels": labels.numpy()}
        np.savez(path, loc=loc, scale=scale, **extra)
    elif path.suffix == ".npy":
        np.save(path, np.stack([loc, scale], 1))
    else:
        raise VarfamError(f"output {args.output} must end in .npy or .npz")
    print(path)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    model, _ = open_run_for_command(args.run)
    try:
        z = np.load(args.latents, allow_pickle=False)
    except FileNotFoundError:
        raise VarfamError(f"latents file {args.latents} does not exist") from None
    except (ValueError, OSError) as e:
        raise VarfamError(f"cannot read {args.latents} as a .npy array ({e})") from None
    if z.ndim == 3 and z.shape[1] == 2:
        z = z[:, 0]
    if z.ndim != 2 or z.shape[1] != model.latent_dim:
        raise VarfamError(
            f"latents must have shape (N, {model.latent_dim}) for this run, got {z.shape}"
        )
    with torch.no_grad():
        images = model.decode(torch.as_tensor(z, dtype=torch.float32)).mean
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
        return func(args)
    except VarfamError as e:
        print(f"varfam: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("varfam: interrupted", file=sys.stderr)
        return 130
