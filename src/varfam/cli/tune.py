"""``varfam tune``: a hyper-parameter study with Optuna; a thin shell over :func:`varfam.tune`.

Several ``varfam tune`` processes given the same ``--storage`` and ``--study`` share one
study (on one machine, or on several with an RDB server or a journal file on a shared
file system); ``--trials`` is the study's total.
"""

from __future__ import annotations

import argparse

from varfam.cli.common import nonnegative_int, positive_float, positive_int

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from varfam.integrations.tune import CLOCKS, OBJECTIVES, PRUNERS, SAMPLERS

    p = sub.add_parser(
        "tune", help="search hyper-parameters with Optuna: every trial a run folder "
                     "(needs pip install 'varfam[tune]')")
    p.add_argument("--config", required=True, metavar="BASE.toml",
                   help="the base config ([model], [data], [train]); it must hold out "
                        "validation examples ([train] validation = N)")
    p.add_argument("--space", required=True, metavar="SPACE.toml",
                   help="the search space: one entry per searched config field, e.g. "
                        "[train] lr = {low = 1e-4, high = 1e-2, log = true}")
    p.add_argument("--trials", type=positive_int, default=20,
                   help="the study's total number of trials, over every process that shares "
                        "it (default 20)")
    p.add_argument("--time-limit", type=positive_float, metavar="MIN",
                   help="start no new trial after this many minutes")
    p.add_argument("--time-clock", choices=CLOCKS, default="wall",
                   help="what --time-limit counts: wall time (default) or cpu, this "
                        "process's CPU time (a budget that other work on a shared machine "
                        "does not eat into)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna storage: an RDB URL (default sqlite:///OUT/study.db; "
                        "postgresql://…, mysql://…) or journal:PATH (a journal file)")
    p.add_argument("--study", metavar="NAME",
                   help="the study's name (default: the name of --out); an existing study "
                        "of that name is joined")
    p.add_argument("--out", metavar="DIR",
                   help="the study folder: trial-NNNN run folders, best.toml, study.html "
                        "(default studies/NAME)")
    p.add_argument("--objective", default="elbo",
                   help=f"what to optimize: {', '.join(OBJECTIVES)} (default elbo, the "
                        "validation ELBO); several, comma-separated (e.g. elbo,time), make "
                        "a multi-objective study with a Pareto front")
    p.add_argument("--pruner", choices=PRUNERS,
                   help="stop unpromising trials on their validation ELBO (default median; "
                        "none for several objectives)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default tpe")
    p.add_argument("--startup-trials", type=nonnegative_int, metavar="N",
                   help="trials before TPE models the results and the median pruner prunes "
                        "(Optuna's defaults: 10 and 5)")
    p.add_argument("--seed", type=nonnegative_int,
                   help="the sampler's seed (each process of a shared study its own)")
    p.add_argument("--iw", type=positive_int, default=100,
                   help="importance samples of the log-likelihood objective (default 100)")
    p.add_argument("--report", action="store_true",
                   help="write each complete trial's pictures and report.html (as varfam "
                        "train does; default: write them later with varfam report)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from varfam.integrations.tune import require_optuna, tune

    require_optuna()  # before anything else: without it, the pip line
    study = tune(args.config, args.space, n_trials=args.trials, time_limit=args.time_limit,
                 time_clock=args.time_clock, storage=args.storage, study_name=args.study,
                 out=args.out, objective=args.objective, sampler=args.sampler, pruner=args.pruner,
                 startup_trials=args.startup_trials, seed=args.seed, iw=args.iw,
                 report=args.report, progress=not args.quiet)
    if not args.quiet:
        states: dict[str, int] = {}
        for t in study.trials:
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        print(f"study '{study.study_name}': "
              + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    return 0
