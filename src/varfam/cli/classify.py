"""``varfam classify RUN``: the classes a semi-supervised run's q(y|x) predicts for a dataset.

Writes one predicted class per example (the most probable under q(y|x)),
preprocessed as the run's training data was, in the order of the data's source:
row ``i`` of the output belongs to row ``index[i]`` of the file
(:func:`varfam.runs.folder.run_rows`). The run's own data: its test split by default
(``--split``); other data (``--data``): every row by default. ``.npy``: int64 (N,);
``.npz``: ``labels`` (N,), ``probs`` (N, C), ``classes`` (C,), ``index`` (N,) and,
where the data has labels, ``true``; ``.csv``: ``index,label,class,probability`` per
row, ``index`` being the row's position in the source. Where the data has labels,
the accuracy is printed too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="predict the classes of a dataset with a semi-supervised run's classifier q(y|x)",
    )
    p.add_argument("run")
    p.add_argument("--data", help="dataset name or path (default: the run's own); other "
                                  "data is classified whole unless --split says otherwise")
    p.add_argument("--split", choices=["test", "train", "all"],
                   help="which examples of the seeded split to classify (default: test for "
                        "the run's own data, all for other data); rows keep the file's order")
    p.add_argument("-o", "--output", required=True,
                   help="FILE.npy (classes), FILE.npz (classes, probabilities) or FILE.csv")
    p.set_defaults(func=cmd_classify)


def cmd_classify(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from varfam.cli.common import open_run_for_command
    from varfam.errors import VarfamError
    from varfam.runs.folder import run_rows

    path = Path(args.output)
    if path.suffix not in (".npy", ".npz", ".csv"):
        raise VarfamError(f"output {args.output} must end in .npy, .npz or .csv")
    model, cfg = open_run_for_command(args.run)
    if not model.has_classifier:
        raise VarfamError(
            f"{args.run} has no classifier q(y|x); train with --labelled N (semi-supervised) "
            "to get one"
        )
    rows = run_rows(cfg, args.data, args.split, own_split="test")
    x, true = rows.x, rows.labels
    model.check_data(x)
    with torch.inference_mode():
        probs = torch.cat([model.classify(x[i : i + 1000]).probs for i in range(0, len(x), 1000)])
    pred = probs.argmax(-1)
    names = model.condition.names
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, pred.numpy())
    elif path.suffix == ".npz":
        extra: dict[str, Any] = {} if true is None else {"true": true.numpy()}
        np.savez(path, labels=pred.numpy(), probs=probs.numpy(), classes=np.array(names),
                 index=rows.index.numpy(), **extra)
    else:
        lines = ["index,label,class,probability"]
        lines += [f"{int(r)},{int(c)},{_csv(names[int(c)])},{float(probs[i, c]):.6f}"
                  for i, (r, c) in enumerate(zip(rows.index, pred))]
        path.write_text("\n".join(lines) + "\n")
    if true is not None:
        acc = float((pred == true).double().mean())
        print(f"accuracy {acc:.4f} on {len(x)} examples", flush=True)
    print(path)
    return 0


def _csv(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text
