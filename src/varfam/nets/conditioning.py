"""Labels y as one more input of the model's parts, and the classifier q(y|x).

A VAE built with ``condition="label"`` models ``p(x|z, y) p(z|y) p(y)`` with
``q(z|x, y)`` (Sohn, Lee & Yan 2015, "Learning Structured Output Representation
using Deep Conditional Generative Models"; the generative model M2 of Kingma,
Rezende, Mohamed & Welling 2014, "Semi-supervised Learning with Deep Generative
Models"). No part changes class:

- the family's heads read ``[h, onehot(y)]``: the encoder network is unchanged and
  the family is built for ``feature_dim + C`` features;
- the decoder network reads ``[z, onehot(y)]``: it is built by the same architecture
  factory for ``latent_dim + C`` inputs (its first layer is wider, for every
  architecture alike);
- the prior may read y (:meth:`varfam.priors.Prior.given_label`; the
  ``conditional`` prior learns a Gaussian per class); every other prior keeps its
  meaning, p(z|y) = p(z);
- ``p(y)`` is uniform over the C classes.

For semi-supervised data the model also holds a classifier q(y|x)
(:class:`Classifier`: an encoder network of the model's architecture and a linear
head), and the objectives sum y out exactly where it is hidden
(:mod:`varfam.objectives.labelled`).

Labels are given as an int, a class name, a list of them, or an int64 tensor (N,);
hidden labels are ``-1``. A float tensor (N, C) is taken as a probability vector per
row ("soft" labels, e.g. to decode half-way between two classes).

>>> cond = LabelCondition(3, ("cat", "dog", "owl"))
>>> cond.labels("dog", 2).tolist(), cond.labels([0, "owl"]).tolist()
([1, 1], [0, 2])
>>> cond.one_hot(torch.tensor([2, 0]), torch.zeros(1))
tensor([[0., 0., 1.],
        [1., 0., 0.]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from varfam.errors import VarfamError, suggest

if TYPE_CHECKING:  # pragma: no cover
    from varfam.config import ModelConfig

__all__ = ["LabelCondition", "Classifier", "build_classifier", "Labels", "CONDITIONS", "HIDDEN"]

#: The values of ``ModelConfig.condition``.
CONDITIONS = ("label",)
#: The label value of an example whose label is hidden (semi-supervised data).
HIDDEN = -1

#: What the user may pass as labels.
Labels = int | str | Sequence[int | str] | Tensor


class Classifier(nn.Module):
    """q(y|x) = Categorical(softmax(W net(x) + b)) over C classes.

    ``net`` maps x (B, *data_shape) to features (B, net.feature_dim): an encoder
    network of the model's architecture (its own weights, not the VAE encoder's).
    The logits are computed in fp32 and normalized with a log-softmax, so no
    probability is ever rounded to an exact 0 before a logarithm (the NaN of Pyro
    PR #1076).

    >>> from varfam.nets import MLPEncoder
    >>> clf = Classifier(MLPEncoder((1, 8, 8), (16,)), 10)
    >>> q = clf(torch.rand(4, 1, 8, 8))
    >>> q.probs.shape, q.logits.exp().sum(-1).allclose(torch.ones(4))
    (torch.Size([4, 10]), True)
    """

    def __init__(self, net: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.net = net
        self.head = nn.Linear(net.feature_dim, n_classes)

    def forward(self, x: Tensor) -> Categorical:
        logits = self.head(self.net(x)).float()
        return Categorical(logits=torch.log_softmax(logits, -1), validate_args=False)


def build_classifier(cfg: ModelConfig, params_per_value: int = 1) -> Classifier:
    """q(y|x) over ``cfg.n_classes`` classes with a fresh encoder network of the model's
    architecture (``cfg.arch``, ``hidden``, ``arch_options``): the network of a model's
    classifier, and of a classifier trained on labelled examples alone."""
    from varfam.registry import ARCHITECTURES

    net, _ = ARCHITECTURES.build(
        cfg.arch, cfg.data_shape, cfg.hidden, cfg.latent_dim, params_per_value,
        options=cfg.arch_options,
    )
    return Classifier(net, cfg.n_classes)


class LabelCondition(nn.Module):
    """The label side of a conditioned model: C classes, their names, one-hot codes, q(y|x).

    ``classes``: one name per class (``()``: the names are ``"0" … "C-1"``);
    ``classifier``: a :class:`Classifier` for semi-supervised models, else ``None``.
    """

    def __init__(
        self, n_classes: int, classes: Sequence[str] = (), classifier: Classifier | None = None
    ) -> None:
        super().__init__()
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise VarfamError(
                f"a model conditioned on labels needs at least 2 classes, got {n_classes!r}"
            )
        if classes and len(classes) != n_classes:
            raise VarfamError(
                f"{len(classes)} class names were given for {n_classes} classes; "
                "give one name per class"
            )
        self.n_classes = n_classes
        self.names = tuple(str(c) for c in classes) or tuple(str(c) for c in range(n_classes))
        self.classifier = classifier

    # ---------------------------------------------------------------- parsing
    def index(self, label: int | str) -> int:
        """The class index of one label: an int in 0..C-1 or a class name."""
        if isinstance(label, str):
            if label in self.names:
                return self.names.index(label)
            if label.isdigit() and int(label) < self.n_classes:
                return int(label)
            raise VarfamError(
                f"unknown label '{label}'{suggest(label, self.names)}; the classes are "
                f"{', '.join(self.names)} (or 0..{self.n_classes - 1})"
            )
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < self.n_classes:
            raise VarfamError(
                f"label {label!r} is not a class of this model; use 0..{self.n_classes - 1} "
                f"or a name ({', '.join(self.names)})"
            )
        return label

    def labels(self, y: Labels, n: int | None = None, device: Any = None) -> Tensor:
        """``y`` as int64 labels (N,) on ``device``; one int or name is repeated ``n`` times.

        A tensor is checked (values in 0..C-1, or -1 for hidden) and passed through.
        """
        if isinstance(y, Tensor):
            out = y.to(device) if device is not None else y
            if out.is_floating_point():
                raise VarfamError("labels must be integers (class indices), not floats")
            bad = (out < HIDDEN) | (out >= self.n_classes)
            if bool(bad.any()):
                raise VarfamError(
                    f"label {int(out[bad][0])} is not a class of this model "
                    f"(0..{self.n_classes - 1}, or -1 for hidden)"
                )
            return out.long()
        if isinstance(y, (int, str)):
            return torch.full((1 if n is None else n,), self.index(y), dtype=torch.long,
                              device=device)
        values = [self.index(v) for v in y]
        return torch.tensor(values, dtype=torch.long, device=device)

    # ---------------------------------------------------------------- codes
    def one_hot(self, y: Tensor, like: Tensor) -> Tensor:
        """One-hot codes (N, C) in ``like``'s dtype and device for int labels (N,).

        A float ``y`` of shape (N, C) is a probability vector per row and is returned
        as it is (cast). Hidden labels (-1) are refused: sum them out instead.
        """
        if y.is_floating_point():
            if y.dim() != 2 or y.shape[-1] != self.n_classes:
                raise ValueError(f"soft labels must have shape (N, {self.n_classes})")
            return y.to(like)
        if bool((y < 0).any()):
            raise VarfamError(
                "a label is hidden (-1) but this model has no classifier q(y|x) to sum it out; "
                "build it with classifier=True (varfam train --labelled N does)"
            )
        return nn.functional.one_hot(y.long(), self.n_classes).to(like)

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}, names={self.names}"
