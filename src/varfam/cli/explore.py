"""``varfam explore RUN``: a local web page to walk the latent space of a saved run.

The page shows the test set's latent map (click or drag to decode a point), one
slider per latent dimension, the interpolation strip between two test examples,
and draws from the prior. It is served on 127.0.0.1 by default; see
:mod:`varfam.reporting.explore.server` for the JSON API.
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from varfam.cli.common import nonnegative_int, positive_int

    p = sub.add_parser(
        "explore",
        help="serve a local page to explore a run's latent space (map, sliders, interpolation)",
    )
    p.add_argument("run")
    p.add_argument("--port", type=nonnegative_int, default=8000,
                   help="port to listen on (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--limit", type=positive_int, metavar="N",
                   help="put only the first N test examples on the map")
    p.add_argument("--log", action="store_true", help="print one line per request")
    p.set_defaults(func=cmd_explore)


def cmd_explore(args: argparse.Namespace) -> int:
    from varfam.errors import VarfamError
    from varfam.reporting.explore import serve

    if args.port > 65535:
        raise VarfamError(f"port must be in 0..65535, got {args.port}")
    serve(args.run, host=args.host, port=args.port, limit=args.limit, quiet=not args.log)
    return 0
