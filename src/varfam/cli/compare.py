"""``varfam compare RUN RUN ...``: key configuration and metrics of runs, side by side."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="a table of runs' configuration and metrics")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--csv", action="store_true", help="print CSV instead of a markdown table")
    p.add_argument("--plot", metavar="FILE.png", help="also write the runs' test ELBO curves")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from varfam.errors import VarfamError
    from varfam.reporting.page import comparison_table, plot_comparison, run_summary

    if args.plot and not args.plot.lower().endswith(".png"):
        raise VarfamError(f"--plot {args.plot} must end in .png")
    summaries = [run_summary(run) for run in args.runs]
    print(comparison_table(summaries, "csv" if args.csv else "markdown"), end="")
    if args.plot:
        plot_comparison(args.runs, args.plot)
    return 0
