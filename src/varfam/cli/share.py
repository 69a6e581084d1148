"""``varfam push`` (a run to the Hugging Face Hub) and ``varfam export`` (ONNX graphs)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push", help="upload a run to a Hugging Face Hub model repo, with a model card"
    )
    p.add_argument("run")
    p.add_argument("repo", metavar="USER/REPO", help="the model repo (created if missing)")
    p.add_argument("--private", action="store_true",
                   help="make the repo private when it is created")
    p.add_argument("--revision", metavar="BRANCH",
                   help="push to this branch (created from main if missing)")
    p.add_argument("--license", default="mit",
                   help="the weights' license on the model card, an id from the Hub's list "
                        "(default mit)")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("export", help="write ONNX graphs of a run's decoder and encoder")
    p.add_argument("run")
    p.add_argument("--decoder", metavar="FILE.onnx",
                   help="graph z (N, D) → the likelihood's mean image (N, *data_shape)")
    p.add_argument("--encoder", metavar="FILE.onnx",
                   help="graph x (N, *data_shape) → the family's location (N, D)")
    p.set_defaults(func=cmd_export)


def cmd_push(args: argparse.Namespace) -> int:
    from varfam.sharing.push import push

    url = push(args.run, args.repo, private=args.private, revision=args.revision,
               license=args.license)
    ref = f"hf://{args.repo.removeprefix('hf://')}" + (
        f"@{args.revision}" if args.revision else "")
    print(url)
    print(f"load it with varfam.load(\"{ref}\") or any command, e.g. `varfam sample {ref} "
          "-n 64 -o samples.png`", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from varfam.errors import VarfamError
    from varfam.runs.folder import open_run
    from varfam.sharing.onnx import export_decoder, export_encoder, onnx_max_difference

    if not (args.decoder or args.encoder):
        raise VarfamError("nothing to export: give --decoder FILE.onnx and/or --encoder FILE.onnx")
    model, _ = open_run(args.run)
    shape = ", ".join(str(s) for s in model.data_shape)
    jobs = [(args.decoder, export_decoder, f"z (N, {model.latent_dim}) → mean (N, {shape})"),
            (args.encoder, export_encoder, f"x (N, {shape}) → loc (N, {model.latent_dim})")]
    for path, export, what in jobs:
        if not path:
            continue
        export(model, path)
        try:
            check = f"; onnxruntime matches PyTorch within {onnx_max_difference(model, path):.1e}"
        except VarfamError:  # no onnxruntime: the graph is written and checked by onnx
            check = ""
        print(f"{path}: {what}{check}")
    return 0
