"""``varfam decode``: decode latents from a .npy or .npz file to images."""

from __future__ import annotations

import argparse

from varfam.cli.common import (
    image_output,
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
    p.add_argument("-o", "--output", required=True, help="FILE.png or FILE.npy")
    p.add_argument("--label", metavar="CLASS",
                   help="a run conditioned on labels: the class to decode with (index or name)")
    p.set_defaults(func=cmd_decode)


def cmd_decode(args: argparse.Namespace) -> int:
    import torch

    image_output(args.output)
    model, _ = open_run_for_command(args.run)
    z = read_latents(args.latents, model.latent_dim)
    if args.label is not None:
        needs_condition(model, "--label")
    elif model.uses_labels:
        raise VarfamError("this run is conditioned on labels: give the class to decode with, "
                          "--label CLASS")
    with torch.no_grad():
        images = model.decode(torch.as_tensor(z, dtype=torch.float32), args.label).mean
    write_images(images, args.output, ncol=8)
    return 0
