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
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from varfam.config import LABELLED_WEIGHTS
from varfam.errors import VarfamError
from varfam.objectives.terms import Terms

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["labelled_objective", "default_alpha", "objective_options", "BoundTerms", "TermsFn",
           "no_classifier"]

#: An objective's per-example bound: ``terms(model, x, epoch, y)`` → :class:`Terms`.
TermsFn = Callable[["VAE", Tensor, "float | Tensor", "Tensor | None"], Terms]


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


def no_classifier() -> VarfamError:
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
    terms_of: TermsFn,
    model: VAE,
    x: Tensor,
    y: Tensor,
    epoch: float | Tensor = 0.0,
    *,
    alpha: float | None = None,
    labelled_share: float | None = None,
) -> BoundTerms:
    """The bound ``terms_of`` (an objective's :meth:`~varfam.objectives.Objective.terms`)
    with labels ``y`` (B,) int64, -1 where hidden (see module doc).

    Reported per example (B,): for a labelled row the bound on ``log p(x|y)`` and its
    terms; for a hidden one ``U(x)`` with reconstruction ``Σ_y q(y|x) E[log p(x|z, y)]``
    and KL ``Σ_y q(y|x) KL_y + KL(q(y|x) || p(y))``. One pass of the networks serves the
    labelled rows and the C copies of the hidden ones. Returns :class:`BoundTerms`, the
    fields of :class:`varfam.objectives.ObjectiveResult` (which wraps them).
    """
    y = y.to(x.device).long()
    rows = _Rows.of(model, x, y)
    terms = _bound(terms_of, model, rows, epoch)
    share = rows.n_l / y.shape[0] if labelled_share is None else float(labelled_share)
    weight = alpha if alpha is not None else (default_alpha(share) if share > 0 else 0.0)
    reported = _reported(terms, rows)
    labelled, unlabelled = terms.surrogate[: rows.n_l], terms.surrogate.new_zeros(0)
    if model.has_classifier:
        labelled, unlabelled = _classified(model, x, y, rows, terms, reported, weight)
    return BoundTerms(-_weighted_mean(labelled, unlabelled, share, rows), *reported)


class _Rows(NamedTuple):
    """A batch laid out for one pass of the networks: its labelled rows, then every class
    for every hidden row, class-major (hidden row j with class k at ``n_l + k·n_u + j``)."""

    known: Tensor  # (B,) bool: the rows whose label is given
    n_l: int
    n_u: int
    c: int  # the number of classes
    x: Tensor  # (n_l + c·n_u, *data_shape)
    y: Tensor  # (n_l + c·n_u,)

    @classmethod
    def of(cls, model: VAE, x: Tensor, y: Tensor) -> _Rows:
        known = y >= 0
        n_l = int(known.sum())
        n_u = y.shape[0] - n_l
        if n_u and not model.has_classifier:
            raise no_classifier()
        c = model.condition.n_classes if model.condition is not None else 0
        if not n_u:
            return cls(known, n_l, n_u, c, x, y)
        x_u = x[~known]
        copies = x_u.unsqueeze(0).expand(c, *x_u.shape).reshape(-1, *x.shape[1:])
        classes = torch.arange(c, device=y.device).repeat_interleave(n_u)
        return cls(known, n_l, n_u, c, torch.cat([x[known], copies]),
                   torch.cat([y[known], classes]))

    def summed(self, q: Tensor, t: Tensor) -> Tensor:
        """``Σ_y q(y|x) t(x, y)`` (n_u,) of per-row values ``t`` (n_l + c·n_u,); ``q`` (n_u, C)."""
        return (q * t[self.n_l :].view(self.c, self.n_u).T).sum(-1)


def _bound(terms_of: TermsFn, model: VAE, rows: _Rows, epoch: float | Tensor) -> Terms:
    """The bound's terms on every row of ``rows``, in one pass."""
    if not rows.n_u:
        return terms_of(model, rows.x, epoch, rows.y)
    with model.repeated_rows(rows.x, rows.n_l + rows.n_u, rows.n_u):  # each image encoded once
        return terms_of(model, rows.x, epoch, rows.y)


def _detached(terms: Terms) -> list[Tensor]:
    """The reported terms (elbo, reconstruction, kl) of every row of the pass, detached."""
    return [t.detach() for t in (terms.elbo, terms.reconstruction, terms.kl)]


def _reported(terms: Terms, rows: _Rows) -> list[Tensor]:
    """(elbo, reconstruction, kl) per example (B,): the labelled rows' filled in, the
    hidden rows' left for :func:`_classified`."""
    out = []
    for t in _detached(terms):
        o = t.new_empty(rows.known.shape[0])
        o[rows.known] = t[: rows.n_l]
        out.append(o)
    return out


def _classified(model: VAE, x: Tensor, y: Tensor, rows: _Rows, terms: Terms,
                reported: list[Tensor], weight: float) -> tuple[Tensor, Tensor]:
    """(labelled, unlabelled) surrogate terms with the classifier's part: ``α log q(y|x)``
    added to a labelled row, ``U(x)`` for a hidden one (whose reported terms it fills in)."""
    labelled, unlabelled = terms.surrogate[: rows.n_l], terms.surrogate.new_zeros(0)
    log_q = model.classify(x).logits  # (B, C), log-normalized
    known = rows.known
    if rows.n_l:
        labelled = labelled + weight * log_q[known].gather(1, y[known, None]).squeeze(1)
    if rows.n_u:
        log_qu = log_q[~known]
        q = log_qu.exp()
        entropy = -(q * log_qu).sum(-1)
        log_py = -math.log(rows.c)
        unlabelled = rows.summed(q, terms.surrogate) + log_py + entropy
        q, entropy = q.detach(), entropy.detach()
        (elbo, recon, kl), (elbo_y, recon_y, kl_y) = reported, _detached(terms)
        elbo[~known] = rows.summed(q, elbo_y) + log_py + entropy
        recon[~known] = rows.summed(q, recon_y)
        kl[~known] = rows.summed(q, kl_y) - log_py - entropy
    return labelled, unlabelled


def _weighted_mean(labelled: Tensor, unlabelled: Tensor, share: float, rows: _Rows) -> Tensor:
    """The paper's objective per example: the labelled and unlabelled means, weighted by the
    data's share of each (``share`` labelled)."""
    parts, weights = [], []
    if rows.n_l:
        parts.append(labelled.mean())
        weights.append(share)
    if rows.n_u:
        parts.append(unlabelled.mean())
        weights.append(1.0 - share)
    total = sum(weights)
    return sum(w / total * p for w, p in zip(weights, parts)) if total > 0 else sum(parts)
