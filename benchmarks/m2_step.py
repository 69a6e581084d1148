"""The cost of M2's exact sum over hidden labels: one training step, the encoder network
reading each unlabelled image once (``VAE.repeated_rows``, the library's path) against
once per class (the C copies passed through the whole model).

Both sides compute the same bound and gradients (``tests/test_labels.py``); the step is
a forward and backward of :func:`varfam.objectives.labelled.labelled_objective` for a batch
of Fashion-MNIST's shape mixing labelled and unlabelled images as the training loop
does. Best of alternating rounds, one process::

    python benchmarks/m2_step.py --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

import varfam
from varfam.objectives import Elbo
from varfam.objectives.labelled import labelled_objective
from varfam.training.labels import batch_labelled


def step_seconds(model: varfam.VAE, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Mean seconds of a forward and backward of the M2 loss over ``steps`` steps."""
    objective = Elbo()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = labelled_objective(objective.terms, model, x, y, alpha=50.0).loss
        model.zero_grad(set_to_none=True)
        loss.backward()
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = varfam.VAE.build(data_shape=(1, 28, 28), hidden=(args.hidden,),
                             latent_dim=args.latent_dim, condition="label", n_classes=10,
                             classifier=True)
    n_l = batch_labelled(args.batch_size, 100 / 40_000)  # N = 100 of 40,000: a tenth
    x = torch.rand(args.batch_size, 1, 28, 28)
    y = torch.full((args.batch_size,), -1)
    y[:n_l] = torch.arange(n_l) % 10
    shared = model.repeated_rows

    def once_per_row(*_: object) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    best = {"once per image": float("inf"), "once per class": float("inf")}
    for r in range(args.rounds):
        for side in (list(best) if r % 2 else list(best)[::-1]):
            model.repeated_rows = shared if side == "once per image" else once_per_row
            best[side] = min(best[side], step_seconds(model, x, y, args.steps))
    print(f"M2 training step, batch {args.batch_size} ({n_l} labelled, {args.batch_size - n_l} "
          f"unlabelled x 10 classes), MLP [{args.hidden}], D = {args.latent_dim}, "
          f"{torch.get_num_threads()} thread(s), best of {args.rounds} alternating rounds of "
          f"{args.steps} steps:")
    for side, seconds in best.items():
        print(f"  encoder network {side}: {seconds * 1e3:.1f} ms")
    print(f"  ratio: {best['once per class'] / best['once per image']:.2f}x")


if __name__ == "__main__":
    main()
