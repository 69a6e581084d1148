"""``varfam eval RUN``: test ELBO, reconstruction term and KL in nats per example."""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="test ELBO, reconstruction and KL of a run, in nats")
    p.add_argument("run")
    p.add_argument("--data", help="evaluate on another dataset's test split")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from ..cli import open_run_for_command
    from ..evaluate import evaluate_elbo
    from ..runs import run_test_data

    model, cfg = open_run_for_command(args.run)
    x, _ = run_test_data(cfg, args.data)
    metrics = {"run": args.run, "n": int(x.shape[0]), **evaluate_elbo(model, x)}
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{args.run}: {metrics['n']} test examples")
        for k in ("elbo", "reconstruction", "kl"):
            print(f"  {k:15s} {metrics[k]:10.3f} nats")
    return 0
