"""``varfam encode``: latent means and scales of a data set's examples."""

from __future__ import annotations

import argparse
from pathlib import Path

from varfam.cli.common import data_labels, open_run_for_command
from varfam.errors import VarfamError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="latent means and scales of a dataset's examples")
    p.add_argument("run")
    p.add_argument("--data", help="dataset name or path (default: the run's)")
    p.add_argument("--split", choices=["all", "train", "test"], default="all",
                   help="which examples: the training split, the test split, or all, training "
                        "first (default all)")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.npy: array (N, 2, D) of [mean, scale]; FILE.npz: loc, scale, "
                        "index (each example's position in the data set), split, and labels, "
                        "factors (N, F) and factor_names where the data has them")
    p.set_defaults(func=cmd_encode)


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from varfam.runs.folder import run_dataset, scored_inputs

    path = Path(args.output)
    if path.suffix not in (".npy", ".npz"):
        raise VarfamError(f"output {args.output} must end in .npy or .npz")
    model, cfg = open_run_for_command(args.run)
    ds = run_dataset(cfg, args.data)
    model.check_data(ds)
    parts = [p for p in ("train", "test") if args.split in (p, "all")]
    locs, scales, labels, index, split, factors = [], [], [], [], [], []
    for part in parts:
        x = scored_inputs(ds, cfg.train, part)
        n = x.shape[0]
        given = data_labels(model, getattr(ds, f"{part}_labels"))  # a run conditioned on labels
        with torch.no_grad():
            for i in range(0, n, 1000):
                q = model.encode(x[i : i + 1000], None if given is None else given[i : i + 1000])
                try:
                    loc, scale = q.mean, q.stddev
                except NotImplementedError:  # no closed form: Monte Carlo with 256 draws
                    z = q.sample((256,))
                    loc, scale = z.mean(0), z.std(0)
                locs.append(loc)
                scales.append(scale)
        y = getattr(ds, f"{part}_labels")
        labels.append(None if y is None else y.numpy())
        f = getattr(ds, f"{part}_factors")  # the known generating factors, row for row
        factors.append(None if f is None else f.numpy())
        where = getattr(ds, f"{part}_index")
        index.append(np.arange(n) if where is None else where.numpy())
        split.append(np.full(n, part))
    loc, scale = torch.cat(locs).numpy(), torch.cat(scales).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        extra = {} if any(y is None for y in labels) else {"labels": np.concatenate(labels)}
        if all(f is not None for f in factors):
            extra["factors"] = np.concatenate(factors)
            if ds.factor_names is not None:
                extra["factor_names"] = np.array(ds.factor_names)
        np.savez(path, loc=loc, scale=scale, index=np.concatenate(index).astype(np.int64),
                 split=np.concatenate(split), **extra)
    else:
        np.save(path, np.stack([loc, scale], 1))
    print(path)
    return 0
