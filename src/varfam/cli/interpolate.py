"""``varfam interpolate``: decode the latent path between pairs of test images."""

from __future__ import annotations

import argparse

from varfam.cli.common import (
    data_labels,
    image_output,
    open_run_for_command,
    positive_int,
    write_images,
)
from varfam.errors import VarfamError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interpolate", help="decode the latent path between pairs of test images")
    p.add_argument("run")
    p.add_argument("-o", "--output", required=True, help="FILE.png or FILE.npy")
    p.add_argument("--pairs", type=positive_int, default=4)
    p.add_argument("--steps", type=positive_int, default=10)
    p.add_argument("--data", help="another dataset: its first rows, in the file's order "
                                  "(default: the run's test split)")
    p.set_defaults(func=cmd_interpolate)


def cmd_interpolate(args: argparse.Namespace) -> int:
    from varfam.reporting.pictures import interpolation_grid
    from varfam.runs.folder import run_test_data

    model, cfg = open_run_for_command(args.run)
    image_output(args.output, model)  # a table run: .npy only, before any work
    x, labels = run_test_data(cfg, args.data)
    model.check_data(x, "the test data")
    y = data_labels(model, labels)
    n = min(2 * args.pairs, x.shape[0] - x.shape[0] % 2)
    if n < 2:
        raise VarfamError("interpolation needs at least two test examples")
    images = interpolation_grid(model, x[:n], steps=args.steps, y=None if y is None else y[:n])
    write_images(images, args.output, args.steps)
    return 0
