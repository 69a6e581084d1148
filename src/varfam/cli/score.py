"""``varfam score RUN``: one anomaly score per row of a data set, higher = more anomalous.

A thin shell over :func:`varfam.evaluation.scores.run.score_run`. Writes a CSV with
``index,label,score`` per row (``label`` only where the data has labels), in the
source's order; with ``--threshold T`` or ``--contamination C`` a column ``anomalous``
(1 = flagged) is added, as ``predict`` flags rows in scikit-learn's ``IsolationForest``
and pyod: ``--threshold`` flags scores above T, ``--contamination`` flags the top C
share of the scored rows (the threshold is the ``100 (1 - C)``-th percentile of their
scores, printed). ``ratio`` fits its background model on the run's training rows
unless ``--background RUN2`` gives one; ``--save-background DIR`` keeps the fitted one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from varfam.cli.common import key_value, nonnegative_int, positive_int

    p = sub.add_parser(
        "score",
        help="anomaly / out-of-distribution score of every row of a data set (nll, ratio, ...)",
    )
    p.add_argument("run")
    p.add_argument("--data", help="dataset name or path (default: the run's own)")
    p.add_argument("--split", choices=["all", "test", "train"], default="all",
                   help="which rows to score (default all: every row, in the source's order)")
    p.add_argument("--method", default="nll",
                   help="the score: nll, elbo, recon, ratio, complexity, regret (varfam list)")
    p.add_argument("-o", "--output", required=True, help="FILE.csv: index,label,score per row")
    flag = p.add_mutually_exclusive_group()
    flag.add_argument("--threshold", type=float, metavar="T",
                      help="flag rows whose score exceeds T (column anomalous)")
    flag.add_argument("--contamination", type=float, metavar="C",
                      help="flag the top C share of the rows, C in (0, 0.5] (column anomalous)")
    p.add_argument("--k", type=positive_int, metavar="K",
                   help="importance samples (nll, ratio, complexity) or draws (elbo, recon)")
    p.add_argument("--steps", type=nonnegative_int, help="fine-tuning steps of regret")
    p.add_argument("--background", metavar="RUN2",
                   help="ratio: the background model's run folder (default: fit one)")
    p.add_argument("--save-background", metavar="DIR",
                   help="ratio: save the fitted background model as a run folder DIR")
    p.add_argument("--option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="another option of the method (repeatable), e.g. --option epochs=3")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the draws (default 0)")
    p.set_defaults(func=cmd_score)


def cmd_score(args: argparse.Namespace) -> int:
    import math

    from varfam.errors import VarfamError
    from varfam.evaluation.scores import check_contamination, flags, threshold_for
    from varfam.evaluation.scores.run import score_run
    from varfam.registry import SCORES

    path = Path(args.output)
    if path.suffix.lower() != ".csv":
        raise VarfamError(f"output {args.output} must end in .csv")
    SCORES.get(args.method)  # an unknown method fails before any work
    if args.contamination is not None:
        check_contamination(args.contamination)
    if args.threshold is not None and not math.isfinite(args.threshold):
        raise VarfamError(f"--threshold must be a finite number, got {args.threshold}")
    if (args.background or args.save_background) and args.method != "ratio":
        raise VarfamError("--background and --save-background are options of --method ratio")
    options = dict(args.option)
    for name in ("k", "steps", "background"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    options["seed"] = args.seed
    if args.save_background:
        options["background"] = _fitted_background(args, options)
    rows = score_run(args.run, args.data, split=args.split, method=args.method, **options)
    threshold = args.threshold
    if args.contamination is not None:
        threshold = threshold_for(rows.scores, args.contamination)
    flagged = None if threshold is None else flags(rows.scores, threshold)
    _write(path, rows, flagged)
    n = rows.scores.shape[0]
    line = f"{n} rows scored with {args.method}"
    if flagged is not None:
        line += f"; {int(flagged.sum())} above the threshold {threshold:.6g}"
    print(line, flush=True)
    print(path)
    return 0


def _fitted_background(args: argparse.Namespace, options: dict):
    """Fit the ratio's background on the run's training rows and save it in --save-background."""
    from varfam.evaluation.scores.ratio import fit_background
    from varfam.runs import save_model
    from varfam.runs.folder import open_run, run_dataset, scored_inputs

    model, cfg = open_run(args.run)
    train = scored_inputs(run_dataset(cfg), cfg.train, "train")
    fit = {k: options[k] for k in ("kind", "rate", "epochs", "init") if k in options}
    background = fit_background(model, train if hasattr(train, "shape") else train[:],
                                seed=args.seed, **fit)
    save_model(background, args.save_background)
    print(f"background model saved in {args.save_background}", flush=True)
    return background


def _write(path: Path, rows, flagged) -> None:
    header = ["index"] + (["label"] if rows.labels is not None else []) + ["score"]
    header += ["anomalous"] if flagged is not None else []
    lines = [",".join(header)]
    for i in range(rows.scores.shape[0]):
        cells = [str(int(rows.index[i]))]
        if rows.labels is not None:
            cells.append(str(int(rows.labels[i])))
        cells.append(repr(float(rows.scores[i])))
        if flagged is not None:
            cells.append("1" if flagged[i] else "0")
        lines.append(",".join(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
