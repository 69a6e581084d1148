"""The loss of one training batch: bf16 autocast, DDP's wrapper, ``torch.compile``.

:func:`loss_function` returns ``loss_of(x, weight, epoch)``, the scalar loss the
optimizer minimises for one batch (or one rank's share of it). The trainer calls
it once per step and rebuilds it only when the set of trained parameters changes.
:func:`auxiliary_step` is the step of an objective's own modules (FactorVAE's
discriminator), which the trainer takes right after the model's.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from varfam.errors import VarfamError
from varfam.parts import autocast
from varfam.training import distributed as dist

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE
    from varfam.objectives import Objective

__all__ = ["LossFunction", "loss_function", "check_compiler", "AuxiliaryStep", "auxiliary_step"]

#: ``loss_of(x, weight, epoch, y)``; ``y``: the batch's labels for a model conditioned on them.
LossFunction = Callable[[torch.Tensor, float, float, "torch.Tensor | None"], torch.Tensor]


def loss_function(
    model: VAE,
    objective: Objective,
    step_module: torch.nn.Module | None,
    device: torch.device,
    bf16: bool,
    compile: str | None,
) -> LossFunction:
    """``loss_of(x, weight, epoch, y=None)``: the scalar training loss of one batch (share).

    Under DDP the loss comes from ``step_module`` (``weight`` is the share's weight);
    with ``compile`` (a :data:`varfam.config.COMPILE_MODES` mode) the whole forward
    pass, and so its backward pass, is compiled by ``torch.compile`` (one graph per
    batch shape: the full batch and the last one). An objective whose gradient needs the
    step in one graph (:attr:`Objective.one_graph_reason`: IWAE-DReG's hook on z) is
    compiled with ``fullgraph``; where the model's step cannot be one graph (the flow
    prior: zuko's transforms; the planar and Sylvester families' iterative inverse; the
    von Mises-Fisher sampler) it is compiled with :attr:`Objective.draw_apart` set, so
    that no graph both draws z and uses it.
    """

    def plain_loss_of(
        x: torch.Tensor, weight: float, epoch: float, y: torch.Tensor | None = None
    ) -> torch.Tensor:  # one process: the objective's loss, as it is
        return objective(model, x, epoch=epoch, y=y).loss

    step = plain_loss_of if step_module is None else step_module

    def loss_of(
        x: torch.Tensor, weight: float, epoch: float, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        with autocast(device, bf16):
            return step(x, weight, epoch, y)

    if not compile:
        return plain_loss_of if step_module is None and not bf16 else loss_of
    check_compiler(device)
    options = _compile_options(compile, device)
    # an objective with a gradient hook (DReG's on z) is compiled whole (fullgraph: a
    # graph break is an error while tracing, before anything ran), or where the model's
    # step cannot be one graph, with z drawn at the end of a graph of its own
    needs_one_graph = objective.one_graph_reason is not None
    whole = torch.compile(loss_of, dynamic=False, fullgraph=needs_one_graph, options=options)
    apart: Callable[..., torch.Tensor] | None = None

    def compiled_loss_of(
        x: torch.Tensor, weight: float, epoch: float, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        nonlocal apart
        # tensors, not Python numbers, so that a new epoch or share weight is no new graph
        args = (x, torch.tensor(weight, dtype=torch.float64),
                torch.tensor(epoch, dtype=torch.float64), y)
        if apart is None:
            try:
                return whole(*args)
            except (torch._dynamo.exc.Unsupported, torch._dynamo.exc.UserError):
                if not needs_one_graph:
                    raise
                apart = torch.compile(loss_of, dynamic=False, options=options)
        objective.draw_apart = True
        try:
            return apart(*args)
        finally:
            objective.draw_apart = False

    return compiled_loss_of


#: ``step(x, weight, epoch, y)``: one optimizer step of an objective's auxiliary modules.
AuxiliaryStep = Callable[[torch.Tensor, float, float, "torch.Tensor | None"], None]


def auxiliary_step(model: VAE, objective: Objective, ctx: dist.Context) -> AuxiliaryStep | None:
    """The step of ``objective``'s auxiliary modules, or ``None`` when it has none.

    ``step(x, weight, epoch, y)`` zeroes their gradients (the model's loss may have left
    some there: the objective's term reads them, but only the model's optimizer steps on
    that loss), minimises ``weight * objective.auxiliary_loss(model, x, epoch, y)`` with
    the objective's optimizer, and under DDP averages their gradients over the ranks
    first (``weight`` is the rank's share weight, so the average is the whole batch's
    gradient). Not compiled, in full precision.
    """
    modules = objective.auxiliary_modules()
    if modules is None:
        return None
    optimizer = objective.auxiliary_optimizer()
    if optimizer is None:
        raise TypeError(f"{type(objective).__name__} has auxiliary modules but no optimizer")
    params = [p for p in modules.parameters() if p.requires_grad]

    def step(x: torch.Tensor, weight: float, epoch: float, y: torch.Tensor | None = None) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = objective.auxiliary_loss(model, x, epoch=epoch, y=y)
        (loss * weight if weight != 1.0 else loss).backward()
        dist.average_gradients(params, ctx)
        optimizer.step()

    return step


def _compile_options(mode: str, device: torch.device) -> dict[str, Any] | None:
    """Inductor options of a compile mode (``max-autotune``: benchmark GEMM kernels)."""
    if mode == "default":
        return None
    # on a CPU the generated code also calls its kernels from C++, not Python
    return {"max_autotune": True, "cpp_wrapper": device.type == "cpu"}


def check_compiler(device: torch.device) -> None:
    """torch.compile's code generator needs Triton on a GPU, a C++ compiler on a CPU."""
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            raise VarfamError("--compile on a GPU needs Triton (pip install triton)")
    elif not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++")):
        raise VarfamError(
            "--compile needs a C++ compiler (g++ or clang++; apt-get install g++), "
            "or train without --compile"
        )
