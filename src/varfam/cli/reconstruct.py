"""``varfam reconstruct``: test inputs beside reconstructions from several z."""

from __future__ import annotations

import argparse

from varfam.cli.common import (
    data_labels,
    image_output,
    nonnegative_int,
    open_run_for_command,
    positive_int,
    write_images,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconstruct", help="test inputs beside reconstructions from several z")
    p.add_argument("run")
    p.add_argument("-o", "--output", required=True, help="FILE.png or FILE.npy")
    p.add_argument("-n", type=positive_int, default=8, help="how many inputs (default 8)")
    p.add_argument("--draws", type=positive_int, default=4, help="draws of z per input")
    p.add_argument("--data", help="another dataset: its first rows, in the file's order "
                                  "(default: the run's test split)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.set_defaults(func=cmd_reconstruct)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from varfam.reporting.pictures import reconstruction_grid
    from varfam.runs.folder import run_test_data

    model, cfg = open_run_for_command(args.run)
    image_output(args.output, model)  # a table run: .npy only, before any work
    x, labels = run_test_data(cfg, args.data)
    model.check_data(x, "the test data")
    y = data_labels(model, labels)
    with model.evaluating(args.seed):
        images, per_row = reconstruction_grid(model, x[: args.n], draws=args.draws,
                                              y=None if y is None else y[: args.n])
    write_images(images, args.output, ncol=per_row)
    return 0
