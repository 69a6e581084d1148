"""``varfam eval RUN``: test ELBO, importance-sampled log-likelihood, inference gap, latent usage.

``varfam eval RUN --factors`` instead scores the disentanglement of the mean codes on
data with known factors (MIG, DCI, SAP, FactorVAE score:
:func:`varfam.evaluation.factors.factor_scores`); ``varfam eval RUN --samples N``
instead measures N samples per sampler (FD, KID, precision, recall and their floor:
:func:`varfam.evaluation.sample_quality.run_sample_quality`). Every number is also
appended to the run's ``metrics.jsonl`` as a line with ``"kind": "eval"``
(``"source": "factors"`` for the disentanglement metrics, ``"samples"`` for samples).
"""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from varfam.cli.common import nonnegative_int, positive_float, positive_int

    p = sub.add_parser(
        "eval",
        help="test ELBO, importance-sampled log p(x), inference gap, active units, MI, probe",
    )
    p.add_argument("run")
    p.add_argument("--data", help="evaluate on another dataset, every row (default: the "
                                  "run's test split)")
    p.add_argument("--iw", type=nonnegative_int, default=1000, metavar="K",
                   help="importance samples per example for log p(x) (default 1000; 0 skips)")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="evaluate only the first N test examples")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the draws (default 0)")
    p.add_argument("--memory-mb", type=positive_float, default=8.0,
                   help="decoder output per importance-sampling chunk (default 8 MB, cache-sized)")
    p.add_argument("--iw-precision", choices=("fp32", "bf16"), default="fp32",
                   help="precision of the decoder's networks in importance sampling (default "
                        "fp32; bf16 is faster on hardware with fast bf16, at a small bias "
                        "measured in docs/performance.md)")
    p.add_argument("--mi-examples", type=positive_int, default=500, metavar="M",
                   help="examples whose aggregate posterior gives I(x; z) (default 500)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    g = p.add_argument_group("disentanglement (data with known factors)")
    g.add_argument("--factors", action="store_true",
                   help="score the mean codes with MIG, DCI, SAP and the FactorVAE score "
                        "(disentanglement_lib's protocol) instead of the bounds")
    g.add_argument("--factor-rows", type=positive_int, metavar="N",
                   help="encode a seeded random subset of N rows, training and test rows "
                        "together (default: all)")
    g.add_argument("--factor-train", type=positive_int, default=10_000, metavar="N",
                   help="training points of each metric (default 10000)")
    g.add_argument("--factor-test", type=positive_int, default=5_000, metavar="N",
                   help="test points of each metric (default 5000)")
    g.add_argument("--factor-metrics", type=_metric_names, metavar="NAMES",
                   help="some of mig,dci,sap,factor_vae (default all)")
    g = p.add_argument_group("sample quality")
    g.add_argument("--samples", type=positive_int, metavar="N",
                   help="instead of the bounds, measure N samples per sampler against the "
                        "training set on varfam's own features: FD, KID, precision, recall, "
                        "beside the test set's floor")
    g.add_argument("--sampler", default="all", metavar="NAME",
                   help="with --samples: prior, gmm, flow, two-stage, or all (default); "
                        "fitted on first use and kept in RUN/samplers/")
    g.add_argument("--refit", action="store_true",
                   help="with --samples: fit the samplers again")
    p.add_argument("--no-record", action="store_true",
                   help="do not append the results to the run's metrics.jsonl")
    p.set_defaults(func=cmd_eval)


def _metric_names(text: str) -> tuple[str, ...]:
    from varfam.evaluation.factors import METRICS

    names = tuple(t.strip() for t in text.split(","))
    bad = [n for n in names if n not in METRICS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown metric '{bad[0]}'; choose from {','.join(METRICS)}")
    return names


def _line(label: str, value, unit: str = "", se=None, digits: int = 3) -> str:
    if value is None:
        return f"  {label:34s} {'–':>10s}"
    text = f"{value:10.{digits}f}" if isinstance(value, float) else f"{value!s:>10s}"
    if se is not None:
        text += f" ± {se:.{digits}f}"
    return f"  {label:34s} {text} {unit}".rstrip()


def cmd_eval(args: argparse.Namespace) -> int:
    from varfam.cli.common import open_run_for_command
    from varfam.evaluation.bounds import evaluate
    from varfam.reporting.page import append_eval_line
    from varfam.runs.folder import run_eval_data

    model, cfg = open_run_for_command(args.run)
    if args.factors:
        return _eval_factors(args, model, cfg)
    if args.samples is not None:
        return _eval_samples(args, model, cfg)
    data = run_eval_data(cfg, args.data)
    m = evaluate(model, data, iw=args.iw, limit=args.limit, seed=args.seed,
                 memory_mb=args.memory_mb, mi_examples=args.mi_examples,
                 iw_precision=args.iw_precision)
    if not args.no_record:
        append_eval_line(args.run, m, source="eval", data=args.data or cfg.data.source,
                         limit=args.limit, seed=args.seed)
    if args.json:
        print(json.dumps({"run": args.run, "data": args.data or cfg.data.source, **m}))
        return 0
    print(f"{args.run}: {m['n']} test examples of {args.data or cfg.data.source}, "
          f"K = {m['iw']} importance samples"
          f"{' decoded in bf16' if m['log_likelihood_precision'] == 'bf16' else ''} "
          f"({m['seconds']:.1f} s)")
    given = "|y" if m.get("conditional") else ""  # a run conditioned on labels: p(x|y)
    if given:
        print("  (conditioned on the test labels y: q(z|x, y), p(z|y), p(x|z, y))")
    print(_line(f"ELBO of log p(x{given})", m["elbo"], "nats", m["elbo_se"]))
    print(_line("  reconstruction", m["reconstruction"], "nats"))
    print(_line("  KL", m["kl"], "nats"))
    print(_line(f"log p(x{given}) (importance sampled)", m["log_likelihood"], "nats",
                m["log_likelihood_se"]))
    print(_line("inference gap log p(x) - ELBO", m["inference_gap"], "nats",
                m["inference_gap_se"]))
    if m["elbo_bpd"] is not None:
        print(_line("-ELBO", m["elbo_bpd"], "bits/dim", digits=4))
        print(_line("-log p(x)", m["log_likelihood_bpd"], "bits/dim", digits=4))
    print(_line("active units", f"{m['active_units']}/{m['latent_dim']}"))
    if m["kl_per_dim"] is not None:
        print("  KL per dimension (nats)          " +
              " ".join(f"{v:.2f}" for v in m["kl_per_dim"]))
    print(_line("mutual information I(x; z)", m["mutual_information"], "nats"))
    print(_line("probe accuracy", m["probe_accuracy"]))
    if m.get("accuracy") is not None or m.get("marginal_log_likelihood") is not None:
        print(_line("test accuracy of q(y|x)", m.get("accuracy"), digits=4))
        print(_line("log p(x), y summed out", m.get("marginal_log_likelihood"), "nats",
                    m.get("marginal_log_likelihood_se")))
    return 0


def _eval_factors(args: argparse.Namespace, model, cfg) -> int:
    """``--factors``: the disentanglement metrics of the mean codes, printed and recorded."""
    from varfam.errors import VarfamError
    from varfam.evaluation.factors import METRICS, factor_scores
    from varfam.reporting.page import append_eval_line
    from varfam.runs.folder import run_dataset

    if args.limit is not None:
        raise VarfamError("--limit cuts the test set of the bounds; with --factors give "
                          "--factor-rows N instead")
    data = run_dataset(cfg, args.data)
    model.check_data(data)
    metrics = args.factor_metrics or METRICS
    m = factor_scores(model, data, rows=args.factor_rows, seed=args.seed,
                      num_train=args.factor_train, num_test=args.factor_test, metrics=metrics)
    protocol = {"factor_train": args.factor_train, "factor_test": args.factor_test,
                "factor_names": list(data.factor_names or ())}
    if not args.no_record:
        append_eval_line(args.run, {**m, **protocol}, source="factors",
                         data=args.data or data.name, seed=args.seed)
    if args.json:
        print(json.dumps({"run": args.run, "data": args.data or data.name, **m, **protocol}))
        return 0
    print(f"{args.run}: mean codes of {m['factor_rows']} rows of {args.data or data.name} "
          f"({m['factor_seconds']:.1f} s); {args.factor_train} training and "
          f"{args.factor_test} test points per metric")
    if "mig" in m:
        print(_line("MIG", m["mig"]))
        for key in sorted(k for k in m if k.startswith("mig_")):
            print(_line(f"  {key[4:]}", m[key]))
    if "dci_disentanglement" in m:
        print(_line("DCI disentanglement", m["dci_disentanglement"]))
        print(_line("DCI completeness", m["dci_completeness"]))
        print(_line("DCI informativeness (test accuracy)", m["dci_informativeness"]))
    if "sap" in m:
        print(_line("SAP", m["sap"]))
    if "factor_vae_score" in m:
        print(_line("FactorVAE score", m["factor_vae_score"]))
        print(_line("  active dimensions", f"{int(m['factor_vae_active_dims'])}"))
    return 0


def _eval_samples(args: argparse.Namespace, model, cfg) -> int:
    """``--samples N``: FD, KID, precision and recall per sampler, printed and recorded."""
    from varfam.evaluation.sample_quality import NOTE, run_sample_quality
    from varfam.reporting.page import append_eval_line
    from varfam.samplers import SAMPLERS

    names = SAMPLERS.names() if args.sampler == "all" else [args.sampler]
    quality, chosen, features = run_sample_quality(args.run, model, cfg, names, n=args.samples,
                                                   refit=args.refit, seed=args.seed)
    if not args.no_record:
        for name, q in quality.items():
            append_eval_line(args.run, q.as_record(), source="samples", sampler=name,
                             seed=args.seed, features=features.description)
    if args.json:
        print(json.dumps({"run": args.run, "features": features.description,
                          **{name: q.as_record() for name, q in quality.items()}}))
        return 0
    floor = quality["floor"]
    print(f"{args.run}: {args.samples} samples per sampler against {floor.n_reference} "
          f"training images; floor: the {floor.n} test images; {features.description}")
    print(f"  {'sampler':24s} {'FD':>9s} {'KID x 1e3':>10s} {'precision':>10s} {'recall':>8s}")
    for name, q in quality.items():
        label = "test vs train (floor)" if name == "floor" else name
        print(f"  {label:24s} {q.fd:9.3f} {1e3 * q.kid:10.2f} {q.precision:10.3f} "
              f"{q.recall:8.3f}")
    for name, text in chosen.items():
        if name != "prior":
            print(f"  {text}")
    print(f"  ({NOTE})")
    return 0
