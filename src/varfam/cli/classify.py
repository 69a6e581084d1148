"""``varfam classify RUN``: the classes a semi-supervised run's q(y|x) predicts for a dataset.

Writes one predicted class per example (the most probable under q(y|x)) of the
chosen split, preprocessed as the run's training data was. ``.npy``: int64 (N,);
``.npz``: ``labels`` (N,), ``probs`` (N, C), ``classes`` (C,) and, where the data
has labels, ``true``; ``.csv``: ``index,label,class,probability`` per row. Where
the data has labels, the accuracy is printed too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="predict the classes of a dataset with a semi-supervised run's classifier q(y|x)",
    )
    p.add_argument("run")
    p.add_argument("--data", help="dataset name or path (default: the run's own)")
    p.add_argument("--split", choices=["test", "train", "all"], default="test",
                   help="which examples to classify (default test; all = train then test)")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.npy (classes), FILE.npz (classes, probabilities) or FILE.csv")
    p.set_defaults(func=cmd_classify)


def cmd_classify(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from varfam.cli.common import open_run_for_command
    from varfam.errors import VarfamError
    from varfam.runs.folder import run_eval_data

    path = Path(args.output)
    if path.suffix not in (".npy", ".npz", ".csv"):
        raise VarfamError(f"output {args.output} must end in .npy, .npz or .csv")
    model, cfg = open_run_for_command(args.run)
    if not model.has_classifier:
        raise VarfamError(
            f"{args.run} has no classifier q(y|x); train with --labelled N (semi-supervised) "
            "to get one"
        )
    ds = run_eval_data(cfg, args.data)
    parts = {"test": [(ds.test, ds.test_labels)], "train": [(ds.train, ds.train_labels)]}
    parts["all"] = parts["train"] + parts["test"]
    chosen = parts[args.split]
    x = torch.cat([p[0] for p in chosen])
    labelled = all(p[1] is not None for p in chosen)
    true = torch.cat([p[1] for p in chosen]) if labelled else None
    model.check_data(x)
    with torch.inference_mode():
        probs = torch.cat([model.classify(x[i : i + 1000]).probs for i in range(0, len(x), 1000)])
    pred = probs.argmax(-1)
    names = model.condition.names
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, pred.numpy())
    elif path.suffix == ".npz":
        extra = {} if true is None else {"true": true.numpy()}
        np.savez(path, labels=pred.numpy(), probs=probs.numpy(), classes=np.array(names), **extra)
    else:
        rows = ["index,label,class,probability"]
        rows += [f"{i},{int(c)},{_csv(names[int(c)])},{float(probs[i, c]):.6f}"
                 for i, c in enumerate(pred)]
        path.write_text("\n".join(rows) + "\n")
    if true is not None:
        acc = float((pred == true).double().mean())
        print(f"accuracy {acc:.4f} on {len(x)} {args.split} examples", flush=True)
    print(path)
    return 0


def _csv(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text
