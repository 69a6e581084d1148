"""``varfam encode``: latent means and scales of a data set's examples."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from varfam.cli.common import data_labels, open_run_for_command
from varfam.errors import VarfamError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="latent means and scales of a dataset's examples")
    p.add_argument("run")
    p.add_argument("--data", help="dataset name or path (default: the run's)")
    p.add_argument("--split", choices=["all", "train", "test"],
                   help="which examples of the seeded split: the training split, the test "
                        "split, or all (default all); rows keep the order of the source")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.npy: array (N, 2, D) of [mean, scale], row i for row i of the "
                        "source; FILE.npz: loc, scale, index (each example's position in the "
                        "data set), split, and labels, factors (N, F) and factor_names where "
                        "the data has them")
    p.set_defaults(func=cmd_encode)


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from varfam.runs.folder import run_rows

    path = Path(args.output)
    if path.suffix not in (".npy", ".npz"):
        raise VarfamError(f"output {args.output} must end in .npy or .npz")
    model, cfg = open_run_for_command(args.run)
    rows = run_rows(cfg, args.data, args.split)
    model.check_data(rows.x)
    x, given = rows.x, data_labels(model, rows.labels)  # a run conditioned on labels
    locs, scales = [], []
    with torch.no_grad():
        for i in range(0, x.shape[0], 1000):
            q = model.encode(x[i : i + 1000], None if given is None else given[i : i + 1000])
            try:
                loc, scale = q.mean, q.stddev
            except NotImplementedError:  # no closed form: Monte Carlo with 256 draws
                z = q.sample((256,))
                loc, scale = z.mean(0), z.std(0)
            locs.append(loc)
            scales.append(scale)
    loc, scale = torch.cat(locs).numpy(), torch.cat(scales).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        extra: dict[str, Any] = {} if rows.labels is None else {"labels": rows.labels.numpy()}
        if rows.factors is not None:
            extra["factors"] = rows.factors.numpy()
            if rows.dataset.factor_names is not None:
                extra["factor_names"] = np.array(rows.dataset.factor_names)
        np.savez(path, loc=loc, scale=scale, index=rows.index.numpy().astype(np.int64),
                 split=rows.split, **extra)
    else:
        np.save(path, np.stack([loc, scale], 1))
    print(path)
    return 0
