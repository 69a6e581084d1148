"""``varfam compare RUN RUN ...``: key configuration and metrics of runs, side by side.

Prints a markdown table (``--csv``: CSV); ``--plot FILE.png`` also writes the runs' test
ELBO curves, and ``--html FILE.html`` one self-contained page: the numbers with the best
of each column marked, the curves overlaid, the sample grids side by side and the
settings that differ (:func:`varfam.reporting.compare.comparison_page`).
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="a table of runs' configuration and metrics")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--csv", action="store_true", help="print CSV instead of a markdown table")
    p.add_argument("--plot", metavar="FILE.png", help="also write the runs' test ELBO curves")
    p.add_argument("--html", metavar="FILE.html",
                   help="also write one page: numbers (best marked), curves overlaid, samples "
                        "side by side, the settings that differ")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from varfam.errors import VarfamError
    from varfam.reporting.compare import (
        comparison_table,
        plot_comparison,
        run_summary,
        write_comparison_page,
    )

    if args.plot and not args.plot.lower().endswith(".png"):
        raise VarfamError(f"--plot {args.plot} must end in .png")
    if args.html and not args.html.lower().endswith((".html", ".htm")):
        raise VarfamError(f"--html {args.html} must end in .html")
    summaries = [run_summary(run) for run in args.runs]
    print(comparison_table(summaries, "csv" if args.csv else "markdown"), end="")
    if args.plot:
        plot_comparison(args.runs, args.plot)
    if args.html:
        write_comparison_page(args.runs, args.html)
    return 0
