"""Objectives with labels: the conditional bound, and M2's exact sum over hidden labels.

Kingma, Rezende, Mohamed & Welling 2014, "Semi-supervised Learning with Deep
Generative Models" (model M2). With ``p(y)`` uniform over C classes and any
per-example bound ``L(x, y) ≤ log p(x|y)`` of an objective (the ELBO, or IWAE's k-sample
bound, both with ``q(z|x, y)``):

- a labelled example scores ``L(x, y)``, and the classifier adds ``α · log q(y|x)``;
- an unlabelled example (label ``-1``) scores the bound on ``log p(x)`` with y summed
  out **exactly**, every class enumerated and weighted by the classifier:

      U(x) = Σ_y q(y|x) [L(x, y) + log p(y)] + H(q(y|x)) ≤ log p(x).

  (Sampling y instead leaves the classifier near chance: Pyro's SS-VAE tutorial.)

The loss weighs a batch's labelled mean against its unlabelled mean. By default
(``labelled_share`` unset; ``varfam train --labelled-weight batch``) each kind weighs
as its share of the batch, so the few labelled examples count as often as
``--labelled-ratio`` draws them: measured in docs/results.md ("Labels"), this keeps
the generative model's y anchored to the classes, where the paper's weighting let it
drift to another clustering and q(y|x) fall below the classifier trained on the
labels alone. With ``labelled_share`` = N_l / N (``--labelled-weight data``) the loss
estimates the paper's objective per training example,
``-(1/N) [Σ_labelled (L + α log q(y|x)) + Σ_unlabelled U]``, whatever the batch's mix.
``α`` defaults to the paper's ``0.1 · N / N_l`` (``0.1 / labelled_share``) either way.

The classifier's log-probabilities come from a log-softmax of fp32 logits and the
entropy is ``-Σ q log q`` on those, so a class whose probability underflows adds
``0 · (finite)``, never ``0 · log 0`` (the NaN of Pyro PR #1076).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

from .config import LABELLED_WEIGHTS
from .errors import VarfamError

if TYPE_CHECKING:  # pragma: no cover
    from .config import ModelConfig
    from .labels import Classifier
    from .model import VAE
    from .objectives import Objective

__all__ = [
    "TrainingLabels",
    "labelled_objective",
    "default_alpha",
    "objective_options",
    "batch_labelled",
    "mixed_order",
    "fit_classifier",
    "accuracy",
    "predict",
]

#: The classification weight of the paper, per labelled example and relative to N / N_l.
PAPER_ALPHA = 0.1


def default_alpha(labelled_share: float) -> float:
    """``α = 0.1 · N / N_l`` (Kingma et al. 2014 and their code) for the data's share N_l / N."""
    if not 0 < labelled_share <= 1:
        raise VarfamError(f"the share of labelled examples must be in (0, 1], got {labelled_share}")
    return PAPER_ALPHA / labelled_share


def objective_options(
    labels: Tensor, alpha: float | None = None, weight: str = "batch"
) -> dict[str, float]:
    """The objective options for training labels (N,) with ``-1`` where hidden.

    ``alpha``: α (default :func:`default_alpha` of the data's share N_l / N).
    ``weight="data"`` adds ``labelled_share`` = N_l / N, so that the loss estimates the
    paper's sum over the data; ``"batch"`` (the default) leaves it out, so that each
    batch's labelled rows weigh as their share of the batch (``--labelled-ratio``),
    i.e. the few labelled examples count as often as they are drawn.
    """
    if weight not in LABELLED_WEIGHTS:
        raise VarfamError(
            f"labelled_weight must be {' or '.join(LABELLED_WEIGHTS)}, got {weight!r}"
        )
    n_l = int((labels >= 0).sum())
    if n_l == 0:
        raise VarfamError("every training label is hidden; keep some with --labelled N")
    share = n_l / labels.shape[0]
    out = {"alpha": default_alpha(share) if alpha is None else float(alpha)}
    if weight == "data":
        out["labelled_share"] = share
    return out


#: Labelled examples in every mixed batch, at least: a tenth of the batch.
MIN_BATCH_SHARE = 0.1


def batch_labelled(batch_size: int, labelled_share: float, ratio: float | None = None) -> int:
    """How many of a mixed batch's ``batch_size`` rows are labelled: ``ratio`` of them, or
    by default the data's share but at least a tenth; at least one, and at least one not."""
    want = max(labelled_share, MIN_BATCH_SHARE) if ratio is None else ratio
    return min(max(1, round(want * batch_size)), batch_size - 1)


def mixed_order(
    labels: Tensor, batch_size: int, ratio: float | None, generator: torch.Generator
) -> Tensor:
    """One epoch of training indices (int64) in which every batch mixes both kinds.

    Consecutive slices of ``batch_size`` are the batches: each holds
    :func:`batch_labelled` labelled examples and fills the rest with unlabelled ones.
    The epoch is one pass over the unlabelled examples (a seeded permutation; the
    last batch may be shorter); the few labelled ones are cycled through their own
    permutations as often as needed. The loss weighs the two kinds by the data's
    share (see :func:`labelled_objective`), so the ratio changes only the variance.
    """
    known = labels >= 0
    lab, unl = known.nonzero()[:, 0], (~known).nonzero()[:, 0]
    if not len(lab) or not len(unl) or batch_size < 2:
        return torch.randperm(labels.shape[0], generator=generator)
    n_l = batch_labelled(batch_size, len(lab) / labels.shape[0], ratio)
    n_u = batch_size - n_l
    n_batches = -(-len(unl) // n_u)
    u = unl[torch.randperm(len(unl), generator=generator)]
    cycles = -(-n_batches * n_l // len(lab))
    ll = torch.cat([lab[torch.randperm(len(lab), generator=generator)] for _ in range(cycles)])
    batches = [torch.cat([ll[b * n_l : (b + 1) * n_l], u[b * n_u : (b + 1) * n_u]])
               for b in range(n_batches)]
    return torch.cat(batches)


@dataclass
class TrainingLabels:
    """The labels the training loop feeds a model conditioned on labels.

    ``train``, ``validation``: (N,) int64, ``-1`` where hidden; ``test``: (N_test,) or
    ``None``. When the training labels mix known and hidden ones, every epoch's order
    is :func:`mixed_order` (``rows`` indices long, a pass over the unlabelled examples);
    otherwise it is a permutation of the N examples.
    """

    train: Tensor
    validation: Tensor | None
    test: Tensor | None
    batch_size: int
    ratio: float | None = None

    @classmethod
    def of(cls, model: VAE, data: Any, n_validation: int, batch_size: int,
           ratio: float | None = None) -> TrainingLabels | None:
        """The labels of ``data`` (a :class:`~varfam.data.Dataset`) for ``model``, with the
        last ``n_validation`` training labels held out; ``None`` for a model without labels."""
        if not model.uses_labels:
            return None
        if data.train_labels is None:
            raise VarfamError(
                f"the model is conditioned on labels but {data.name} has none; train it on "
                "labelled data (class sub-folders of images, or labels in a .npz)"
            )
        labels = model.condition.labels(data.train_labels.long().cpu())
        n = labels.shape[0] - n_validation
        out = cls(labels[:n], labels[n:] if n_validation else None,
                  None if data.test_labels is None else data.test_labels.long().cpu(),
                  batch_size, ratio)
        if out.hidden and model.condition.classifier is None:
            raise _no_classifier()
        return out

    @property
    def hidden(self) -> bool:
        """Whether some training labels are hidden (semi-supervised training)."""
        return bool((self.train < 0).any())

    @property
    def mixed(self) -> bool:
        """Whether batches mix labelled and unlabelled examples (both kinds are present)."""
        return self.hidden and bool((self.train >= 0).any()) and self.batch_size > 1

    @property
    def rows(self) -> int:
        """Indices per epoch (see :func:`mixed_order`)."""
        if not self.mixed:
            return self.train.shape[0]
        n_l = batch_labelled(self.batch_size, float((self.train >= 0).double().mean()), self.ratio)
        n_u = int((self.train < 0).sum())
        return n_u + -(-n_u // (self.batch_size - n_l)) * n_l

    def order(self, generator: torch.Generator) -> Tensor:
        """One epoch's order of training indices: mixed batches, or a permutation."""
        if self.mixed:
            return mixed_order(self.train, self.batch_size, self.ratio, generator)
        return torch.randperm(self.train.shape[0], generator=generator)

    def objective_options(self, alpha: float | None, weight: str = "batch") -> dict[str, float]:
        """The objective's ``alpha`` and, for ``weight="data"``, ``labelled_share``
        (see :func:`objective_options`)."""
        return objective_options(self.train, alpha, weight)


def fit_classifier(
    cfg: ModelConfig, x: Tensor, y: Tensor, *, steps: int = 500, lr: float = 1e-3,
    batch_size: int = 128, seed: int = 0,
) -> Classifier:
    """The classifier network of a model with ``cfg`` (:func:`varfam.labels.build_classifier`)
    trained on labelled examples ``x`` (N, *data_shape), ``y`` (N,) alone: ``steps`` Adam
    steps on the cross-entropy of batches of ``batch_size`` (all of them when N is
    smaller). The baseline that semi-supervised training must beat."""
    from .labels import build_classifier

    torch.manual_seed(seed)
    clf = build_classifier(cfg)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(x.shape[0], generator=g)[:batch_size]
        loss = -clf(x[idx]).log_prob(y[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


def _no_classifier() -> VarfamError:
    return VarfamError(
        "some labels are hidden (-1) but this model has no classifier q(y|x) to sum them "
        "out; build it with classifier=True (varfam train --labelled N does)"
    )


class BoundTerms(NamedTuple):
    """The semi-supervised bound: the scalar loss and per-example (B,) terms in nats."""

    loss: Tensor
    elbo: Tensor
    reconstruction: Tensor
    kl: Tensor


def labelled_objective(
    objective: Objective,
    model: VAE,
    x: Tensor,
    y: Tensor,
    epoch: float | Tensor = 0.0,
    *,
    alpha: float | None = None,
    labelled_share: float | None = None,
) -> BoundTerms:
    """``objective``'s bound with labels ``y`` (B,) int64, -1 where hidden (see module doc).

    Reported per example (B,): for a labelled row the bound on ``log p(x|y)`` and its
    terms; for a hidden one ``U(x)`` with reconstruction ``Σ_y q(y|x) E[log p(x|z, y)]``
    and KL ``Σ_y q(y|x) KL_y + KL(q(y|x) || p(y))``. One pass of the networks serves the
    labelled rows and the C copies of the hidden ones. Returns :class:`BoundTerms`, the
    fields of :class:`varfam.objectives.ObjectiveResult` (which wraps them).
    """
    y = y.to(x.device).long()
    known = y >= 0
    n_l = int(known.sum())
    n_u = y.shape[0] - n_l
    condition = model.condition
    classifier = condition.classifier if condition is not None else None
    if n_u and classifier is None:
        raise _no_classifier()
    c = condition.n_classes if condition is not None else 0
    if n_u:  # every class for every hidden row, class-major: row j of class k at k·n_u + j
        x_u = x[~known]
        copies = x_u.unsqueeze(0).expand(c, *x_u.shape).reshape(-1, *x.shape[1:])
        x_rows = torch.cat([x[known], copies])
        y_rows = torch.cat([y[known], torch.arange(c, device=y.device).repeat_interleave(n_u)])
    else:
        x_rows, y_rows = x, y
    if n_u:  # the encoder network reads each image once, not once per class
        with model.repeated_rows(x_rows, n_l + n_u, n_u):
            terms = objective.terms(model, x_rows, epoch, y_rows)
    else:
        terms = objective.terms(model, x_rows, epoch, y_rows)
    share = n_l / y.shape[0] if labelled_share is None else float(labelled_share)
    weight = alpha if alpha is not None else (default_alpha(share) if share > 0 else 0.0)

    labelled = terms.surrogate[:n_l]
    reported = [t.detach() for t in (terms.elbo, terms.reconstruction, terms.kl)]
    elbo, recon, kl = (t.new_empty(y.shape[0]) for t in reported)
    elbo[known], recon[known], kl[known] = (t[:n_l] for t in reported)
    unlabelled = labelled.new_zeros(0)
    if classifier is not None:
        log_q = classifier(x).logits  # (B, C), log-normalized
        if n_l:
            labelled = labelled + weight * log_q[known].gather(1, y[known, None]).squeeze(1)
        if n_u:
            log_qu = log_q[~known]
            q = log_qu.exp()
            entropy = -(q * log_qu).sum(-1)
            log_py = -math.log(c)

            def summed(t: Tensor) -> Tensor:  # Σ_y q(y|x) t(x, y), (n_u,)
                return (q * t[n_l:].view(c, n_u).T).sum(-1)

            unlabelled = summed(terms.surrogate) + log_py + entropy
            q, entropy = q.detach(), entropy.detach()
            elbo[~known] = summed(reported[0]) + log_py + entropy
            recon[~known] = summed(reported[1])
            kl[~known] = summed(reported[2]) - log_py - entropy
    # the paper's objective per example: labelled and unlabelled means, weighted by the data
    parts, weights = [], []
    if n_l:
        parts.append(labelled.mean())
        weights.append(share)
    if n_u:
        parts.append(unlabelled.mean())
        weights.append(1.0 - share)
    total = sum(weights)
    value = sum(w / total * p for w, p in zip(weights, parts)) if total > 0 else sum(parts)
    return BoundTerms(-value, elbo, recon, kl)


# ---------------------------------------------------------------- measuring
@torch.inference_mode()
def predict(model: VAE, x: Tensor, batch_size: int = 1000) -> Tensor:
    """The most probable class under q(y|x) for every example of ``x``: int64 (N,) on CPU."""
    was_training = model.training
    model.eval()
    try:
        out = [
            model.classify(x[i : i + batch_size].to(model.device, torch.float32)).logits
            .argmax(-1).cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(model: VAE, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """The share of examples of ``x`` whose most probable class under q(y|x) is ``y``."""
    return float((predict(model, x, batch_size) == y.cpu()).double().mean())
