"""``ratio``: the likelihood ratio against a background model, after Ren et al. 2019.

``ratio(x) = -log p(x) - (-log p_bg(x))``: the model's negative log-likelihood minus a
*background* model's, both importance-sampled with the same K and seed. Much of
``log p(x)`` measures population-level statistics that any image shares (smooth
regions, the amount of background); a model trained on corrupted inputs learns those
and little of the semantics, so subtracting its log-likelihood leaves the semantic
part (Ren, Liu, Fertig, Snoek, Poplin, DePristo, Dillon & Lakshminarayanan 2019,
"Likelihood Ratios for Out-of-Distribution Detection").

**The background model** (option ``kind``) must explain what is cheap in every input
and little of what makes the training data what it is:

- ``"local"`` (the default for images under a Bernoulli likelihood): a small generic
  model of local pixel statistics, a VAE with a 2-dimensional code, one hidden layer
  of 32 and the ``autoregressive-bernoulli`` likelihood with a 5 × 5 causal window,
  trained on the same training rows. The window predicts a pixel from its neighbours,
  so smooth or empty regions cost it as little as they cost the model, and the ratio
  keeps what the model knows beyond them. Likelihoods are dominated by such local
  statistics (Schirrmeister, Zhou, Ball & Wang 2020, "Understanding Anomaly Detection
  with Deep Invertible Networks through Hierarchies of Distributions and Features";
  Havtorn, Frellsen, Hauberg & Maaløe 2021, "Hierarchical VAEs Know What They Don't
  Know"). Measured on Fashion-MNIST against MNIST digits (docs/anomaly.md), it works
  where the perturbed copy fails: with a Bernoulli likelihood on grey values, a model
  fine-tuned on noise pays for every dark pixel, so it penalizes the simple digits
  more than the model does and the ratio ranks them as *less* anomalous.
- ``"perturbed"`` (the default for other data, tables included): Ren et al.'s
  background, the same architecture trained on perturbed training inputs: each value
  is replaced, with probability ``rate`` (default 0.2; the paper tunes 0.1-0.3), by
  noise — for images in [0, 1] a uniformly drawn 8-bit level (a fair coin for binary
  images), for other data the same column's value in a random other row, so every
  replacement lies in the column's support. It starts from a copy of the model
  (``init="copy"``) or from new weights (``init="fresh"``, as in the paper).

Either is trained with :func:`varfam.train` for ``epochs`` epochs (default 5) by
:func:`fit_background`; give it to the score as ``background=`` (a model or a run
folder), or give the training rows as ``train=`` and the score fits one with its seed.

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

__all__ = ["LikelihoodRatio", "fit_background", "perturb", "INITS", "KINDS", "background_kind"]

#: How a perturbed background model starts: a copy of the model, or new weights.
INITS = ("copy", "fresh")
#: The background models: a small local model, Ren et al.'s perturbed-input model, or
#: whichever of them fits the model ("auto").
KINDS = ("auto", "local", "perturbed")
#: Likelihoods whose log-mass the local background model's is comparable with.
_LOCAL_LIKELIHOODS = ("bernoulli", "autoregressive-bernoulli")


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


def background_kind(model: VAE, kind: str = "auto") -> str:
    """The background model that ``kind`` means for ``model``: ``"local"`` or ``"perturbed"``."""
    if kind not in KINDS:
        raise VarfamError(f"score option kind must be one of {', '.join(KINDS)}, got {kind!r}")
    likelihood = model.config.likelihood if model.config is not None else ""
    local = len(model.data_shape) == 3 and likelihood in _LOCAL_LIKELIHOODS
    if kind == "local" and not local:
        raise VarfamError(
            f"the local background model is for images under a Bernoulli likelihood; this "
            f"model has data {model.data_shape} and likelihood '{likelihood}': use "
            "kind='perturbed'"
        )
    return kind if kind != "auto" else "local" if local else "perturbed"


def fit_background(model: VAE, train: Any, *, kind: str = "auto", rate: float = 0.2,
                   epochs: int = 5, init: str = "copy", seed: int = 0, lr: float = 1e-3,
                   batch_size: int = 128) -> VAE:
    """A background model for :class:`LikelihoodRatio`, trained on ``train``.

    ``train``: the model's training rows (N, *data_shape) in model units, or a
    :class:`~varfam.data.Dataset` (its training split). ``kind``: ``"local"``,
    ``"perturbed"`` or ``"auto"`` (see the module doc, also for ``rate`` and ``init``,
    which only the perturbed model reads). Trains with :func:`varfam.train` for
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
    kind = background_kind(model, kind)
    g = torch.Generator().manual_seed(seed)
    noisy = x if kind == "local" else perturb(x, float(rate), g)
    if kind == "local":
        with model.evaluating(seed):
            background = VAE.build(
                data_shape=model.data_shape, arch="mlp", hidden=(32,), latent_dim=2,
                likelihood="autoregressive-bernoulli", likelihood_options={"kernel": 5},
            ).to(model.device)
    elif init == "copy":
        background = copy.deepcopy(model)
    else:
        if model.config is None:
            raise VarfamError("init='fresh' needs a model built from a config; use init='copy'")
        with model.evaluating(seed):
            background = VAE.build(copy.deepcopy(model.config)).to(model.device)
    held = noisy[: max(1, min(256, noisy.shape[0] // 10))]
    data = Dataset("background", noisy, held)
    train_model(background, data, epochs=epochs, seed=seed, lr=lr,
                batch_size=min(batch_size, noisy.shape[0]), device=str(model.device))
    return background.eval()


@SCORES.register(
    "ratio",
    "-log p(x) minus a background model's -log p(x): a small local model of the pixels, or "
    "for tables the model fine-tuned on perturbed rows (options background or train, kind, "
    "rate, epochs, init, k)",
    "Ren et al. 2019, Likelihood Ratios for Out-of-Distribution Detection",
)
@dataclass(kw_only=True)
class LikelihoodRatio(Score):
    """``-log p(x) + log p_bg(x)`` per row, nats (see the module doc).

    ``background``: a model (:class:`~varfam.VAE`) or a run folder; or ``train``: the
    training rows (or a Dataset), from which :func:`fit_background` fits one with
    ``kind``, ``rate``, ``epochs``, ``init`` and the score's seed. ``k``: importance samples.
    """

    background: Any = None
    train: Any = None
    kind: str = "auto"
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
            bg = fit_background(model, self.train, kind=self.kind, rate=self.rate,
                                epochs=self.epochs, init=self.init, seed=self.seed)
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
        with bg.evaluating():
            own = log_likelihood(model, x, y, self.k, memory_mb=self.memory_mb, seed=self.seed)
            if bg is model:
                return own - own
            other = log_likelihood(bg, x, y, self.k, memory_mb=self.memory_mb, seed=self.seed)
        return other - own
