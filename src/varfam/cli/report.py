"""``varfam report RUN``: measure a run and write its self-contained ``report.html``."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from varfam.cli.common import nonnegative_int, positive_int

    p = sub.add_parser("report", help="write RUN/report.html: curves, metrics and pictures")
    p.add_argument("run")
    p.add_argument("--data", help="measure on another dataset, every row (default: the "
                                  "run's test split)")
    p.add_argument("--iw", type=nonnegative_int, default=100, metavar="K",
                   help="importance samples per example for log p(x) (default 100)")
    p.add_argument("--limit", type=positive_int, default=500, metavar="N",
                   help="measure the first N test examples (default 500)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--no-record", action="store_true",
                   help="do not append the metrics to the run's metrics.jsonl")
    g = p.add_argument_group("anomaly scores")
    g.add_argument("--score", default="nll", metavar="METHOD",
                   help="the score whose histogram the page shows: nll (default), elbo, recon, "
                        "... (varfam list), or none")
    g.add_argument("--score-k", type=positive_int, default=16, metavar="K",
                   help="importance samples (or draws) of the score (default 16)")
    g.add_argument("--ood-data", metavar="OTHER",
                   help="a second dataset (name or path) whose test examples are scored too: "
                        "the page shows both histograms and the ROC curve with its AUROC")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from varfam.errors import VarfamError
    from varfam.registry import SCORES
    from varfam.reporting.page import write_report

    score = None if args.score == "none" else args.score
    if score is not None:
        SCORES.get(score)  # an unknown method fails before any work
    elif args.ood_data:
        raise VarfamError("--ood-data is compared by a score; leave out --score none")
    path = write_report(args.run, data=args.data, iw=args.iw, limit=args.limit, seed=args.seed,
                        record=not args.no_record, score=score, score_k=args.score_k,
                        ood_data=args.ood_data)
    print(path)
    return 0
