"""``varfam sample``: decode draws from the prior or a fitted sampler (or rows of a table run).

``--sampler NAME`` (``varfam list``: prior, gmm, flow, two-stage) draws z from a sampler
fitted on the run's training set, fitted on first use and kept in ``RUN/samplers/``
(:func:`varfam.samplers.run_sampler`); ``--refit`` fits it again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from varfam.cli.common import (
    image_output,
    needs_condition,
    nonnegative_int,
    open_run_for_command,
    positive_int,
    write_images,
)
from varfam.errors import VarfamError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="decode draws from the prior or a fitted sampler")
    p.add_argument("run")
    p.add_argument("-n", type=positive_int,
                   help="how many (default 64; with --label all, per class: default 8)")
    p.add_argument("--label", metavar="CLASS",
                   help="a run conditioned on labels: the class to draw (index or name), or "
                        "'all' for a grid with one named row per class (a table run: n rows "
                        "per class)")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.png (grid) or FILE.npy (array); for a table run FILE.csv, .tsv "
                        "or .parquet (synthetic rows in the original units)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--sampler", default="prior", metavar="NAME",
                   help="what draws z: prior (default), gmm, flow or two-stage, fitted on the "
                        "run's training set on first use and kept in RUN/samplers/")
    p.add_argument("--refit", action="store_true",
                   help="fit the sampler again even if RUN/samplers/ has one")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> int:
    from varfam.data.tables import TABLE_SUFFIXES

    if Path(args.output).suffix.lower() in TABLE_SUFFIXES:  # synthetic rows of a table run
        from varfam.data.tables import write_frame

        if args.sampler != "prior":
            raise VarfamError("--sampler draws images; table rows come from the prior only")
        model, cfg = open_run_for_command(args.run)
        print(write_frame(_table_rows(model, cfg.data.label_column, args), args.output))
        return 0
    image_output(args.output)  # a bad output name is refused before any fitting
    model, cfg = open_run_for_command(args.run)
    image_output(args.output, model, rows=True)  # a table run makes rows, not pictures
    sampler = None
    if args.sampler != "prior" or args.refit:
        from varfam.samplers import run_sampler

        sampler = run_sampler(args.run, model, cfg, args.sampler, refit=args.refit)
        if not sampler.loaded and sampler.needs_fit:
            print(f"fitted {sampler.describe()} in {sampler.info['fit_seconds']:.1f} s",
                  file=sys.stderr)
    if args.label is not None:
        needs_condition(model, "--label")
    with model.evaluating(args.seed):
        _write_samples(model, args, sampler)
    return 0


def _table_rows(model, label_column: str | None, args: argparse.Namespace):
    """A table run's synthetic rows (a DataFrame in the table's units and levels); a run
    conditioned on labels adds each row's class in its label column: ``--label CLASS``
    gives n rows of that class, ``--label all`` n rows per class (default 8), no
    ``--label`` n rows whose classes are drawn from p(y)."""
    import torch

    from varfam.tables.imputation import sample_table

    y, n = None, args.n or 64
    if args.label is not None:
        needs_condition(model, "--label")
        if args.label == "all":
            per_class = args.n or 8
            y = torch.arange(model.condition.n_classes).repeat_interleave(per_class)
            n = len(y)
        else:
            y = args.label
    return sample_table(model, n, y, seed=args.seed, label_column=label_column)


def _write_samples(model, args: argparse.Namespace, sampler) -> None:
    """Draw the images ``args`` ask for and write them to ``args.output``."""
    if args.label is None:
        write_images(model.sample(args.n or 64, sampler=sampler), args.output, ncol=8)
        return
    if args.label != "all":
        write_images(model.sample(args.n or 64, args.label, sampler=sampler), args.output,
                     ncol=8)
        return
    from varfam.reporting.pictures import class_grid, save_class_grid

    per_class = args.n or 8
    if image_output(args.output).suffix.lower() == ".npy":
        write_images(class_grid(model, per_class, sampler), args.output, ncol=per_class)
    else:
        print(save_class_grid(model, args.output, per_class, sampler))
