"""The training loop's optimizer step: a fused torch Adam's kernel without its per-step Python.

``torch.optim.Adam(fused=True).step()`` spends about 0.1 ms per call on the CPU
outside its one kernel: profiler records, hook lookups, collecting the state of
every parameter into lists and grouping them by device and dtype, each step
again. :class:`AdamStep` collects the lists once (per epoch: the loop makes one
per epoch) and calls the same two ops with the same arguments
(``_foreach_add_`` on the step counts, then ``_fused_adam_``), so the weights and
the optimizer's state are bit for bit those of ``optimizer.step()``; the state
still lives in the optimizer, which the checkpoint saves.

Anything the direct call would not reproduce falls back to ``optimizer.step()``:
an optimizer other than a fused Adam with float hyper-parameters, AMSGrad,
``maximize``, decoupled weight decay, a learning rate held as a tensor,
parameters on several devices or of several dtypes, a parameter without state yet
(before the first step) or without a gradient this step (a part that is not
trained yet), and registered step hooks. State loaded into the optimizer in mid-epoch
(``load_state_dict`` makes new groups) is collected again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

try:  # private to torch.optim: another version without them takes optimizer.step() always
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
except ImportError:  # pragma: no cover
    _global_optimizer_pre_hooks = _global_optimizer_post_hooks = {None: None}

__all__ = ["AdamStep"]


@dataclass
class _Group:
    """One parameter group's tensors, in the optimizer's order."""

    options: dict
    params: list[torch.Tensor]
    exp_avgs: list[torch.Tensor]
    exp_avg_sqs: list[torch.Tensor]
    steps: list[torch.Tensor]


class AdamStep:
    """``zero_grad()`` and ``step()`` of ``optimizer`` for one epoch of the training loop.

    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = torch.optim.Adam([w], lr=0.1, fused=True)
    >>> step = AdamStep(opt)
    >>> for _ in range(2):
    ...     step.zero_grad(); (w * w).sum().backward(); step.step()
    >>> [round(v, 4) for v in w.tolist()], int(opt.state[w]["step"])
    ([0.8004, 0.8004, 0.8004], 2)
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self._groups: list[_Group] | None = self._collect()

    def zero_grad(self) -> None:
        """``optimizer.zero_grad(set_to_none=True)``."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """``optimizer.step()``: the fused kernel called directly where it computes the same."""
        groups, opt = self._groups, self.optimizer
        if groups is not None and opt.param_groups[0] is not groups[0].options:
            groups = None  # load_state_dict made new groups and state: collect them again
        if (groups is None or opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks
                or _global_optimizer_pre_hooks or _global_optimizer_post_hooks):
            opt.step()
            if groups is None:  # the state appears with the first step
                self._groups = self._collect()
            return
        grads = [[p.grad for p in g.params] for g in groups]
        if any(x is None for group in grads for x in group):  # torch.optim skips these
            opt.step()
            return
        with torch.no_grad():
            for g, group in zip(groups, grads):
                torch._foreach_add_(g.steps, 1)
                _fused(g.params, group, g.exp_avgs, g.exp_avg_sqs, g.steps, g.options)

    def _collect(self) -> list[_Group] | None:
        """The groups' tensors, or None where the direct call would differ from ``step()``."""
        opt = self.optimizer
        if type(opt) is not torch.optim.Adam or not self.params or not _kernel_callable():
            return None
        first = self.params[0]
        groups = []
        for g in opt.param_groups:
            if not (g.get("fused") and not g["amsgrad"] and not g["maximize"]
                    and not g.get("decoupled_weight_decay", False)
                    and not g.get("capturable") and not g.get("differentiable")
                    and all(isinstance(v, float) for v in (g["lr"], *g["betas"]))):
                return None
            states = [opt.state.get(p) for p in g["params"]]
            if any(not s or not {"step", "exp_avg", "exp_avg_sq"} <= s.keys() for s in states):
                return None
            if any(p.device != first.device or p.dtype != first.dtype for p in g["params"]):
                return None
            groups.append(_Group(g, list(g["params"]), [s["exp_avg"] for s in states],
                                 [s["exp_avg_sq"] for s in states], [s["step"] for s in states]))
        return groups


def _fused(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
           exp_avg_sqs: list[Tensor], steps: list[Tensor], o: dict[str, Any]) -> None:
    """One call of torch's fused Adam kernel with a param group's options ``o``."""
    beta1, beta2 = o["betas"]
    torch._fused_adam_(
        params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=o["lr"],
        beta1=beta1, beta2=beta2, weight_decay=o["weight_decay"], eps=o["eps"],
        maximize=False, grad_scale=None, found_inf=None,
    )


@functools.cache
def _kernel_callable() -> bool:
    """Whether this torch's private fused kernel takes the call above: tried once on
    scratch tensors, so that another torch version falls back to ``optimizer.step()``
    instead of failing."""
    if not hasattr(torch, "_fused_adam_"):
        return False
    try:
        with torch.no_grad():
            w, g, m, v, t = (torch.zeros(1) for _ in range(5))
            _fused([w], [g], [m], [v], [t], {"betas": (0.9, 0.999), "lr": 1e-3,
                                             "weight_decay": 0.0, "eps": 1e-8})
    except (TypeError, RuntimeError, NotImplementedError):
        return False
    return True
