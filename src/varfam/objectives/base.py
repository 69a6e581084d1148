"""The objective's contract, and the one place that chooses an analytic or Monte Carlo KL.

An objective is called as ``objective(model, x, epoch=e)`` (and ``y=labels`` for a
model conditioned on labels) and returns an :class:`ObjectiveResult` whose ``loss``
is minimised (a scalar, mean over the batch) and whose per-example terms ``elbo``,
``reconstruction`` and ``kl`` are (B,) tensors in nats. Subclasses implement
:meth:`Objective.terms`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, kl_divergence
from torch.distributions import kl as torch_kl

from varfam.errors import VarfamError
from varfam.objectives.labelled import labelled_objective
from varfam.objectives.terms import ObjectiveResult, Terms
from varfam.parts import fp32

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["Objective", "kl_term", "kl_per_dimension", "ESTIMATORS", "non_negative",
           "probe_posterior"]


ESTIMATORS = ("plain", "stl", "dreg")


def _traceable_dispatch_kl(type_p: type, type_q: type) -> object:
    """torch's ``_dispatch_kl`` (the most specific registered rule), as dynamo can trace it.

    ``kl_divergence`` looks its rule up in a memo and, the first time a pair of types
    is met (or after any ``register_kl`` has cleared the memo), in the registry with
    ``min(<generator>)``, which dynamo cannot trace: the compiled step broke into
    pieces right there (in :func:`kl_term`, after ``z`` was drawn). Besides the lost
    speed, IWAE-DReG's gradient hook on ``z`` then sat in a later piece than ``z`` and
    saw only a part of its gradient: ``None`` (a crash) with the standard and the
    learned prior, a wrong gradient where ``z`` was also used after the break.
    Registered with ``torch.compiler.substitute_in_graph``, this runs in dynamo's trace
    in place of torch's function (eager calls still run torch's): the same search
    without a generator (the same rule for every pair of torch's and varfam's
    distribution types, tested), returning the registry's entry itself so that
    ``kl_divergence`` can memoize it.
    """
    best = None
    for super_p, super_q in torch_kl._KL_REGISTRY:
        if issubclass(type_p, super_p) and issubclass(type_q, super_q):
            match = torch_kl._Match(super_p, super_q)
            best = match if best is None or match <= best else best
    return NotImplemented if best is None else torch_kl._KL_REGISTRY[best.types]


def _register_kl_dispatch_for_dynamo() -> None:
    try:
        torch.compiler.substitute_in_graph(torch_kl._dispatch_kl)(_traceable_dispatch_kl)
    except (AttributeError, TypeError, ValueError):  # another torch, or registered already
        pass


_register_kl_dispatch_for_dynamo()


def kl_term(
    q: Distribution,
    p: Distribution,
    z: Tensor,
    log_q: Tensor | None = None,
    log_p: Tensor | None = None,
) -> Tensor:
    """KL(q || p) per example, shape ``z.shape[:-1]``, in nats.

    Uses the closed form registered with ``torch.distributions.kl`` where one
    exists; otherwise the Monte Carlo estimate ``log q(z) - log p(z)`` on the same
    ``z`` that feeds the decoder (one estimate per sample when ``z`` has sample
    dimensions). ``log_q``/``log_p``, when given, are those log-densities already
    evaluated at ``z`` and are used instead of evaluating them again.
    """
    try:
        kl = kl_divergence(q, p)
    except NotImplementedError:
        lq = q.log_prob(z) if log_q is None else log_q
        lp = p.log_prob(z) if log_p is None else log_p
        return lq - lp
    lead = z.shape[:-1]
    return kl if kl.shape == lead else kl.expand(lead)


def kl_per_dimension(q: Distribution, p: Distribution) -> Tensor | None:
    """Closed-form KL per latent dimension, shape (B, D), when q and p factorize.

    Returns ``None`` when either is not a product of independent dimensions with
    a registered KL (then only the total KL is defined).
    """
    if not (isinstance(q, Independent) and isinstance(p, Independent)):
        return None
    if q.reinterpreted_batch_ndims != 1 or p.reinterpreted_batch_ndims != 1:
        return None
    try:
        return kl_divergence(q.base_dist, p.base_dist)
    except NotImplementedError:
        return None


class Objective:
    """Base class: ``objective(model, x, epoch=..., y=None)`` → :class:`ObjectiveResult`.

    Subclasses implement :meth:`terms`, the per-example bound for ``x`` (and labels
    ``y`` of a model conditioned on labels). ``epoch`` is fractional (``epoch + i / n``
    at batch i of n). A compiled training step (``TrainConfig.compile``) passes it as
    a 0-d float64 tensor, so that a new value does not recompile the step: use it in
    arithmetic, not in Python branches.

    With labels ``y`` (B,) int64 (``-1`` where hidden) the bound is conditioned on y
    where it is known and sums y out exactly where it is hidden, and a model with a
    classifier adds ``alpha · log q(y|x)`` for labelled rows
    (:func:`varfam.objectives.labelled.labelled_objective`, the M2 objective of Kingma et al.
    2014). ``alpha`` and ``labelled_share`` (N_labelled / N of the training data) are
    options of every objective; the training loop sets them from the data.

    **What the loop tells an objective, and what an objective may own.** Before the
    first step (and before anything is written) the loop calls :meth:`prepare` with the
    model, the number N of training examples and the rows of a batch on this process;
    the base records N as ``data_size`` (β-TCVAE's estimator of q(z) reads it) and an
    objective refuses there, in one :class:`VarfamError` line, a model or batch it
    cannot train. An objective may own *auxiliary modules* with their own optimizer
    (FactorVAE's discriminator): :meth:`auxiliary_modules`, :meth:`auxiliary_optimizer`
    and :meth:`auxiliary_loss`. The loop steps them after every step of the model, the
    model's optimizer never sees their parameters, the checkpoint saves and restores
    both (so ``--resume`` stays exact), ``model.safetensors`` leaves them out, and under
    DDP their gradients are averaged over the processes like the model's.
    """

    alpha: float | None = None
    labelled_share: float | None = None
    #: Why a compiled training step should be one graph, or ``None``. A gradient hook on
    #: an intermediate tensor (DReG's on z) sees, in a compiled step that breaks into
    #: graphs, only the gradient of the tensor's uses after the graph that made it (the
    #: rest is summed inside that graph): ``None`` where there are none, a wrong gradient
    #: otherwise (issue 26). Such a step is compiled with ``fullgraph``, or where the model
    #: cannot be one graph, with :attr:`draw_apart` set.
    one_graph_reason: str | None = None
    #: Set while a compiled step that cannot be one graph runs: the objective then ends
    #: the graph right after drawing z (``torch._dynamo.graph_break()``, nothing in eager
    #: code), so that the graph that draws z uses it nowhere.
    draw_apart: bool = False
    #: N, the number of training examples (set by :meth:`prepare`; ``None`` before).
    data_size: int | None = None

    def prepare(self, model: VAE, *, data_size: int, batch_size: int) -> None:
        """Called once by the training loop before the first step (module doc).

        ``data_size``: N, the training examples; ``batch_size``: the rows of one batch on
        this process (the global batch over the processes, rounded down). The loop seeds
        torch from the run's seed around this call, so auxiliary modules built here start
        from the same weights in every run with that seed.
        """
        if isinstance(data_size, bool) or not isinstance(data_size, int) or data_size < 1:
            raise VarfamError(f"the data size must be a positive integer, got {data_size!r}")
        self.data_size = data_size

    def auxiliary_modules(self) -> nn.Module | None:
        """The modules this objective trains itself (not parts of the model), or ``None``."""
        return None

    def auxiliary_optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer of :meth:`auxiliary_modules` (``None`` when there are none)."""
        return None

    def auxiliary_loss(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> Tensor:
        """The scalar loss of :meth:`auxiliary_modules` on the batch ``x`` (B, *data_shape),
        minimised by :meth:`auxiliary_optimizer` right after the model's step on ``x``."""
        raise NotImplementedError  # pragma: no cover - only objectives with auxiliary modules

    def _labelled_options(self, owner: str, alpha: float | None,
                          labelled_share: float | None) -> None:
        if alpha is not None:
            non_negative(owner, alpha=alpha)
        if labelled_share is not None and not (
            isinstance(labelled_share, (int, float)) and 0 < labelled_share <= 1
        ):
            raise VarfamError(
                f"{owner}: option labelled_share must be in (0, 1], got {labelled_share!r}"
            )
        self.alpha = None if alpha is None else float(alpha)
        self.labelled_share = None if labelled_share is None else float(labelled_share)

    def terms(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> Terms:
        raise NotImplementedError  # pragma: no cover

    def __call__(
        self, model: VAE, x: Tensor, epoch: float | Tensor = 0.0, y: Tensor | None = None
    ) -> ObjectiveResult:
        if y is not None and model.has_classifier:
            return ObjectiveResult(*labelled_objective(
                self.terms, model, x, y, epoch, alpha=self.alpha,
                labelled_share=self.labelled_share))
        t = self.terms(model, x, epoch, y if model.uses_labels else None)
        loss = -t.surrogate.mean() if t.negated is None else t.negated.mean()
        return ObjectiveResult(loss, t.elbo, t.reconstruction, t.kl)


def non_negative(owner: str, **values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise VarfamError(
                f"{owner}: option {name} must be a non-negative number, got {value!r}"
            )


def probe_posterior(model: VAE) -> Distribution | None:
    """q(z|x) of the family on two all-zero feature rows (no data needed), to check before
    training that an objective can use it; ``None`` when the family cannot be probed so."""
    family = model.family
    try:
        with torch.no_grad(), fp32():
            return family(torch.zeros(2, family.feature_dim, device=model.device))
    except Exception:  # noqa: BLE001 - a family that needs more than features: check later
        return None
