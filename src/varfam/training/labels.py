"""The data side of training with labels: which rows are labelled, and batches that mix both.

M2's objective (:mod:`varfam.objectives.labelled`) needs batches in which labelled and
unlabelled rows meet; :func:`mixed_order` draws such an epoch, :class:`TrainingLabels`
holds the labels a run trains with, and :func:`fit_classifier` trains the labelled-only
classifier that semi-supervised training must beat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from varfam.errors import VarfamError
from varfam.objectives.labelled import no_classifier, objective_options

if TYPE_CHECKING:  # pragma: no cover
    from varfam.config import ModelConfig
    from varfam.model import VAE
    from varfam.nets.conditioning import Classifier

__all__ = ["TrainingLabels", "batch_labelled", "mixed_order", "fit_classifier", "MIN_BATCH_SHARE"]


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
        if out.hidden and not model.has_classifier:
            raise no_classifier()
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
    """The classifier network of a model with ``cfg``
    (:func:`varfam.nets.conditioning.build_classifier`) trained on labelled examples ``x``
    (N, *data_shape), ``y`` (N,) alone: ``steps`` Adam steps on the cross-entropy of
    batches of ``batch_size`` (all of them when N is smaller). The baseline that
    semi-supervised training must beat."""
    from varfam.nets.conditioning import build_classifier

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


