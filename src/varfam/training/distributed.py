"""Data-parallel training: torchrun's environment, the process group, and each rank's shard.

``torchrun --nproc-per-node N -m varfam train …`` (add ``--nnodes M
--node-rank R --rdzv-endpoint HOST:PORT`` across machines) starts N processes
per machine with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` set. :func:`setup` reads them and joins the process group
(``gloo`` on CPU, ``nccl`` on GPU, one GPU per local rank).

The batch size is **global**: every rank draws the same permutation of the
training set (same seed), cuts the same batches from it, and trains on its
contiguous share of each batch (:func:`shard`). The loss of each share is
weighted by its size so that DistributedDataParallel's gradient average is the
gradient of the whole batch's mean loss: N processes give the single-process
result (to float rounding) for any objective whose loss is a mean over examples.

DDP all-reduces gradients only for a module it wraps, while an objective calls
``model.encode``/``model.decode``; :class:`ObjectiveModule` is that module — its
``forward`` runs the objective and returns the weighted loss.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor, nn

from varfam.errors import VarfamError

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE
    from varfam.objectives import Objective

__all__ = [
    "Context",
    "setup",
    "teardown",
    "local_device",
    "launched_rank",
    "shard",
    "ObjectiveModule",
    "wrap",
    "all_reduce_max",
    "all_reduce_sum",
    "average_gradients",
    "barrier",
    "all_gather_bytes",
]


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world_size`` and whether it made the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that evaluates, prints and writes files."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise VarfamError(f"environment variable {name}={raw!r} is not a whole number") from None


def launched_rank() -> int:
    """This process's global rank as torchrun set it (0 when not launched by torchrun)."""
    return _env_int("RANK", 0) if _env_int("WORLD_SIZE", 1) > 1 else 0


def setup(device: torch.device) -> Context:
    """Join the process group described by torchrun's environment (a no-op for one process).

    A group that the caller already initialized is used as it is (and left to the
    caller to destroy).
    """
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Context()
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if not dist.is_available():  # pragma: no cover - builds without distributed
        raise VarfamError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise VarfamError(
            f"WORLD_SIZE={world} is set but {', '.join(missing)} is not; "
            "start data-parallel training with torchrun --nproc-per-node N -m varfam train …"
        )
    if device.type == "cuda":
        torch.cuda.set_device(local)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world)
    return Context(rank, world, local, owns_group=True)


def local_device(ctx: Context, device: torch.device) -> torch.device:
    """The GPU of this local rank under data parallelism; ``device`` otherwise."""
    if ctx.distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", ctx.local_rank)
    return device


def teardown(ctx: Context, together: bool = True) -> None:
    """Destroy the process group if :func:`setup` created it.

    The DistributedDataParallel wrapper sits in reference cycles (its hooks refer
    to it); it is collected first, so that its reducer and any pending gloo work
    are released while the group and the interpreter are still alive — otherwise
    their destruction at interpreter exit can abort the process ("terminate called
    without an active exception"). With ``together`` (a normal end) the ranks also
    meet at a barrier so that none destroys the group while another still uses it.
    """
    if ctx.owns_group and dist.is_initialized():
        gc.collect()
        if together:
            dist.barrier()
        dist.destroy_process_group()


def shard(n: int, ctx: Context) -> tuple[slice, float]:
    """This rank's contiguous share of a global batch of ``n`` examples, and its loss weight.

    The weight ``share * world_size / n`` makes the average of the ranks'
    weighted mean losses equal the mean loss over the whole batch. A rank left
    without examples (a last batch smaller than the world) trains on the batch's
    first example with weight 0, so that every rank takes part in the all-reduce.

    >>> shard(10, Context(rank=1, world_size=3))
    (slice(4, 7, None), 0.9)
    """
    if not ctx.distributed:
        return slice(0, n), 1.0
    base, extra = divmod(n, ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    size = base + (ctx.rank < extra)
    if size == 0:
        return slice(0, 1), 0.0
    return slice(start, start + size), size * ctx.world_size / n


class ObjectiveModule(nn.Module):
    """``forward(x, weight, epoch)`` → ``weight * objective(model, x, epoch).loss``.

    The module DDP wraps, so that the parameters the objective touches through
    ``model.encode``/``model.decode``/``model.prior_distribution`` have their
    gradients averaged across ranks.
    """

    def __init__(self, model: VAE, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: Tensor, weight: float, epoch: float, y: Tensor | None = None) -> Tensor:
        return self.objective(self.model, x, epoch=epoch, y=y).loss * weight


def wrap(model: VAE, objective: Objective, ctx: Context, device: torch.device) -> nn.Module:
    """:class:`ObjectiveModule` inside DistributedDataParallel (rank 0's weights broadcast).

    ``static_graph=True`` lets a family or prior leave some parameters unused
    (the same ones every step) without a per-step search for them.
    """
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(
        ObjectiveModule(model, objective), device_ids=ids, static_graph=True
    )


def all_reduce_max(t: Tensor, ctx: Context) -> Tensor:
    """Element-wise maximum over ranks (in place; returned for chaining)."""
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def all_reduce_sum(t: Tensor, ctx: Context) -> Tensor:
    """Element-wise sum over ranks (in place; returned for chaining)."""
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def average_gradients(params: list[Tensor], ctx: Context) -> None:
    """Each parameter's gradient replaced by its mean over ranks (a no-op for one process).

    For modules DDP does not wrap (an objective's auxiliary modules): one all-reduce of the
    gradients flattened together; a parameter without a gradient counts as zeros.
    """
    if not ctx.distributed or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for p in params:
        p.grad = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()


def barrier(ctx: Context) -> None:
    """Wait for every rank (a no-op for one process)."""
    if ctx.distributed:
        dist.barrier()


def all_gather_bytes(t: Tensor, ctx: Context) -> list[Tensor]:
    """Every rank's copy of a CPU byte tensor of equal size (RNG states), in rank order."""
    if not ctx.distributed:
        return [t]
    objects: list[object] = [None] * ctx.world_size
    dist.all_gather_object(objects, t)
    return [o for o in objects if isinstance(o, Tensor)]
