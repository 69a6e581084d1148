"""``varfam decode``: decode latents from a .npy or .npz file to images, or to table rows.

For a table run, ``.csv``, ``.tsv`` or ``.parquet`` get the decoded rows (each column's
point value: the mean of a number, the most probable or median level) in the table's
own units and levels; ``.npy`` gets the model's array (model units); pictures are refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from varfam.cli.common import (
    image_output,
    is_table_run,
    needs_condition,
    open_run_for_command,
    read_latents,
    write_images,
)
from varfam.errors import VarfamError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("decode", help="decode latents from a .npy or .npz file to images")
    p.add_argument("run")
    p.add_argument("--latents", required=True,
                   help="FILE.npy of shape (N, D) (or encode's (N, 2, D)), or encode's FILE.npz "
                        "(its 'loc' array)")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.png or FILE.npy; for a table run FILE.csv, .tsv or .parquet "
                        "(rows in the table's units) or FILE.npy (model units)")
    p.add_argument("--label", metavar="CLASS",
                   help="a run conditioned on labels: the class to decode with (index or name)")
    p.set_defaults(func=cmd_decode)


def cmd_decode(args: argparse.Namespace) -> int:
    import torch

    model, _ = open_run_for_command(args.run)
    image_output(args.output, model, rows=True)
    z = read_latents(args.latents, model.latent_dim)
    if args.label is not None:
        needs_condition(model, "--label")
    elif model.uses_labels:
        raise VarfamError("this run is conditioned on labels: give the class to decode with, "
                          "--label CLASS")
    with torch.no_grad():
        images = model.decode(torch.as_tensor(z, dtype=torch.float32), args.label).mean
    if is_table_run(model) and Path(args.output).suffix.lower() != ".npy":
        # rows in the table's units and levels, not model units
        from varfam.data.tables import from_model_units, write_frame

        print(write_frame(from_model_units(images, list(model.likelihood.columns)),
                          args.output))
        return 0
    write_images(images, args.output, ncol=8)
    return 0
