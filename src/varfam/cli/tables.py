"""``varfam impute RUN``: fill a table's missing cells; and ``varfam sample RUN -o rows.csv``.

``impute`` writes the table with every missing cell of a modelled column filled
(:func:`varfam.tables.imputation.impute`): the conditional mean or level by self-normalized
importance sampling with ``--k`` draws per row, or with ``--draws M`` M multiple
imputations by sampling-importance-resampling, written as ``NAME_1.csv`` ...
``NAME_M.csv``. Observed cells come back unchanged. With ``--truth FILE`` (the
complete table) it also scores the imputation on the cells that were missing:
RMSE for numbers, error rate for categories, and HI-VAE's normalized error.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from varfam.errors import VarfamError

__all__ = ["register", "cmd_impute"]


def register(sub: argparse._SubParsersAction) -> None:
    from varfam.cli.common import nonnegative_int, positive_int

    p = sub.add_parser(
        "impute",
        help="fill the missing cells of a table with a table run (MIWAE importance sampling)",
    )
    p.add_argument("run")
    p.add_argument("--data", metavar="FILE",
                   help="the table to fill: .csv, .tsv, .parquet or .npy (default: the run's)")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.csv, .tsv, .parquet or .npy; with --draws M, FILE_1 ... FILE_M")
    p.add_argument("--k", type=positive_int, default=1000,
                   help="importance draws per row (default 1000)")
    p.add_argument("--draws", type=nonnegative_int, default=0, metavar="M",
                   help="write M multiple imputations (sampling-importance-resampling) instead "
                        "of the single conditional-mean imputation")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--truth", metavar="FILE",
                   help="the complete table: score the imputed cells against it")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    p.set_defaults(func=cmd_impute)


def _outputs(output: str, draws: int) -> list[Path]:
    from varfam.data.tables import TABLE_SUFFIXES

    path = Path(output)
    if path.suffix.lower() not in (*TABLE_SUFFIXES, ".npy"):
        raise VarfamError(f"output {output} must end in .csv, .tsv, .parquet or .npy")
    if draws <= 1:
        return [path]
    return [path.with_name(f"{path.stem}_{m + 1}{path.suffix}") for m in range(draws)]


def cmd_impute(args: argparse.Namespace) -> int:
    import numpy as np

    from varfam.data.tables import write_frame
    from varfam.runs.folder import open_run
    from varfam.tables.imputation import (
        as_table,
        imputation_errors,
        impute,
        read_truth,
        table_columns,
    )

    paths = _outputs(args.output, args.draws)
    model, cfg = open_run(args.run)
    columns = table_columns(model)
    source = args.data or cfg.data.source
    if not Path(source).is_file():
        raise VarfamError(
            f"the run trained on '{source}', which is not a table file; give the table to "
            "fill with --data FILE"
        )
    table = as_table(model, source, cfg.data.label_column)
    truth = read_truth(args.truth, table) if args.truth else None
    filled, ll = impute(model, table, k=args.k, draws=args.draws, seed=args.seed,
                        return_log_likelihood=True)
    frames = filled if isinstance(filled, list) else [filled]
    for path, frame in zip(paths, frames):
        print(write_frame(frame, path))
    hidden = table.missing.numpy()
    report = {"run": args.run, "data": source, "rows": int(hidden.shape[0]),
              "missing_cells": int(hidden.sum()), "k": args.k,
              "log_likelihood": float(np.mean(ll))}
    if truth is not None:
        report.update(imputation_errors(truth, frames[0], hidden, columns))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['missing_cells']} missing cells in {report['rows']} rows filled "
          f"(K = {args.k}); observed-data log-likelihood {report['log_likelihood']:.3f} "
          "nats per row")
    if truth is not None:
        for name, m in report["columns"].items():
            what = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if k != "n")
            print(f"  {name:24s} {what}  ({m['n']} cells)")
        if not math.isnan(report["nerror"]):
            print(f"  {'mean normalized error':24s} {report['nerror']:.4f}")
    return 0


