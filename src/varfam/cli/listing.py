"""``varfam list``: every registered part, by kind."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="every registered dataset, family, prior, likelihood, …")
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from varfam import families, likelihoods, nets, objectives, priors  # noqa: F401
    from varfam.data import named  # noqa: F401
    from varfam.registry import ALL_REGISTRIES

    for kind, registry in ALL_REGISTRIES.items():
        print(f"{kind}:")
        for entry in registry:
            ref = f"  [{entry.reference}]" if entry.reference else ""
            print(f"  {entry.name:22s} {entry.description}{ref}")
    return 0
