"""``ratio``: the likelihood ratio against a background model, after Ren et al. 2019.

``ratio(x) = -log p(x) - (-log p_bg(x))``: the model's negative log-likelihood minus a
*background* model's, both importance-sampled with the same K and seed. Much of
``log p(x)`` measures population-level statistics that any image shares (smooth
regions, the amount of background); a model trained on corrupted inputs learns those
and little of the semantics, so subtracting its log-likelihood leaves the semantic
part (Ren, Liu, Fertig, Snoek, Poplin, DePristo, Dillon & Lakshminarayanan 2019,
"Likelihood Ratios for Out-of-Distribution Detection").

**The background model** here is, as in Ren et al., the same architecture trained on
perturbed training inputs: each value is replaced, with probability ``rate``
(default 0.2; the paper tunes 0.1-0.3), by noise — for images in [0, 1] a uniformly
drawn 8-bit level (a fair coin for binary images), for other data (tables) the same
column's value in a random other row, so that every replacement lies in the
column's support. By default (``init="copy"``) it starts from a copy of the model and
is fine-tuned on those inputs for ``epochs`` (default 5) epochs; ``init="fresh"``
trains it from newly initialized weights, as the paper does. :func:`fit_background`
builds it; give it to the score as ``background=`` (a model or a run folder), or give
the training rows as ``train=`` and the score fits one with the seed.

A model's ratio against itself is exactly 0.

>>> import torch, varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> x = torch.rand(4, 1, 8, 8).round()
>>> LikelihoodRatio(background=model, k=5)(model, x).abs().max().item()
0.0
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from varfam.errors import VarfamError
from varfam.evaluation.scores.base import Score, as_rows, check_positive, check_rows
from varfam.evaluation.scores.nll import log_likelihood
from varfam.registry import SCORES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["LikelihoodRatio", "fit_background", "perturb", "INITS"]

#: How the background model starts: a copy of the model, or new weights.
INITS = ("copy", "fresh")


def perturb(x: Tensor, rate: float, generator: torch.Generator) -> Tensor:
    """``x`` (N, *shape) with each value replaced by noise with probability ``rate``.

    Images (rows of 2 or more dimensions) with values in [0, 1]: a uniform 8-bit level
    ``j / 255`` (or 0/1 when the data is binary). Other data: the same column's value in
    a uniformly drawn row. NaN (missing) stays NaN.
    """
    hit = torch.rand(x.shape, generator=generator) < rate
    finite = x[~torch.isnan(x)]
    image = x.dim() >= 3 and bool(((finite >= 0) & (finite <= 1)).all())
    if image:
        binary = bool(((finite == 0) | (finite == 1)).all())
        levels = 2 if binary else 256
        noise = torch.randint(levels, x.shape, generator=generator).float() / (levels - 1)
    else:
        rows = torch.randint(x.shape[0], x.shape, generator=generator)
        noise = torch.gather(x, 0, rows)
    out = torch.where(hit, noise, x)
    return torch.where(torch.isnan(x), x, out)


def fit_background(model: VAE, train: Any, *, rate: float = 0.2, epochs: int = 5,
                   init: str = "copy", seed: int = 0, lr: float = 1e-3,
                   batch_size: int = 128) -> VAE:
    """A background model for :class:`LikelihoodRatio`, trained on perturbed ``train`` rows.

    ``train``: the model's training rows (N, *data_shape) in model units, or a
    :class:`~varfam.data.Dataset` (its training split). See the module doc for the
    perturbation (``rate``) and ``init``. Trains with :func:`varfam.train` for
    ``epochs`` epochs (``lr``, ``batch_size``, ``seed``); returns the model in eval mode.
    """
    from varfam.data import Dataset
    from varfam.model import VAE
    from varfam.training import train as train_model

    if isinstance(train, Dataset):
        train = train.train
    x = check_rows(model, as_rows(train), "ratio")
    if x.shape[0] < 2:
        raise VarfamError("the background model needs at least 2 training rows")
    if not (isinstance(rate, (int, float)) and 0 < rate < 1):
        raise VarfamError(f"score option rate must lie in (0, 1), got {rate!r}")
    if init not in INITS:
        raise VarfamError(f"score option init must be one of {', '.join(INITS)}, got {init!r}")
    check_positive(epochs, "score option epochs")
    g = torch.Generator().manual_seed(seed)
    noisy = perturb(x, float(rate), g)
    if init == "copy":
        background = copy.deepcopy(model)
    else:
        if model.config is None:
            raise VarfamError("init='fresh' needs a model built from a config; use init='copy'")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            background = VAE.build(copy.deepcopy(model.config)).to(model.device)
    held = noisy[: max(1, min(256, noisy.shape[0] // 10))]
    data = Dataset("background", noisy, held)
    train_model(background, data, epochs=epochs, seed=seed, lr=lr,
                batch_size=min(batch_size, noisy.shape[0]), device=str(model.device))
    return background.eval()


@SCORES.register(
    "ratio",
    "-log p(x) minus a background model's -log p(x); background model: a copy fine-tuned "
    "on perturbed inputs (options background, train, rate, epochs, init, k)",
    "Ren et al. 2019, Likelihood Ratios for Out-of-Distribution Detection",
)
@dataclass(kw_only=True)
class LikelihoodRatio(Score):
    """``-log p(x) + log p_bg(x)`` per row, nats (see the module doc).

    ``background``: a model (:class:`~varfam.VAE`) or a run folder; or ``train``: the
    training rows (or a Dataset), from which :func:`fit_background` fits one with
    ``rate``, ``epochs``, ``init`` and the score's seed. ``k``: importance samples.
    """

    background: Any = None
    train: Any = None
    rate: float = 0.2
    epochs: int = 5
    init: str = "copy"
    k: int = 100
    name = "ratio"
    supports_labels = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.k, "score option k")
        if self.background is None and self.train is None:
            raise VarfamError(
                "score 'ratio' needs a background model: pass background= (a model or a run "
                "folder) or train= (the training rows, to fit one)"
            )

    def background_model(self, model: VAE) -> VAE:
        """The background model: given, loaded from its folder, or fitted on ``train``."""
        bg = self.background
        if bg is None:
            bg = fit_background(model, self.train, rate=self.rate, epochs=self.epochs,
                                init=self.init, seed=self.seed)
            self.background = bg  # fitted once per score object
        elif isinstance(bg, (str, Path)):
            from varfam.runs.checkpoint import load_model

            bg = load_model(bg, map_location=model.device)
        if tuple(bg.data_shape) != tuple(model.data_shape):
            raise VarfamError(
                f"the background model's data shape {bg.data_shape} differs from the model's "
                f"{model.data_shape}"
            )
        return bg

    def compute(self, model: VAE, x: Tensor, y: Tensor | None) -> Tensor:
        bg = self.background_model(model)
        was_training = bg.training
        bg.eval()
        try:
            own = log_likelihood(model, x, y, self.k, memory_mb=self.memory_mb, seed=self.seed)
            if bg is model:
                return own - own
            other = log_likelihood(bg, x, y, self.k, memory_mb=self.memory_mb, seed=self.seed)
        finally:
            bg.train(was_training)
        return other - own
