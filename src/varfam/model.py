"""The VAE: encoder network, family, decoder network, likelihood and prior wired together.

>>> import torch, varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(32,))
>>> q = model.encode(torch.rand(5, 1, 8, 8))      # a torch Distribution over z
>>> q.rsample().shape
torch.Size([5, 2])
>>> model.sample(3).shape
torch.Size([3, 1, 8, 8])
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from varfam import families as _families  # noqa: F401  (registers the built-in parts)
from varfam import likelihoods as _likelihoods  # noqa: F401
from varfam import nets as _nets  # noqa: F401
from varfam import priors as _priors  # noqa: F401
from varfam.config import ModelConfig
from varfam.data.base import Dataset
from varfam.data.labels import configure_labels
from varfam.data.tables import configure_model
from varfam.errors import VarfamError
from varfam.families.base import Family
from varfam.likelihoods.base import Likelihood
from varfam.nets import tabular as _nets_tabular  # noqa: F401
from varfam.nets.conditioning import LabelCondition, Labels, build_classifier
from varfam.parts import TrainingHooks, fp32, overrides
from varfam.priors.base import Prior
from varfam.registry import ARCHITECTURES, FAMILIES, LIKELIHOODS, PRIORS, accepted_options

__all__ = ["VAE"]


def _full_precision(t: Tensor) -> Tensor:
    """Cast bf16/fp16 network outputs (from autocast) to fp32; leave fp32/fp64 alone."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _unset_parts(cfg: ModelConfig) -> set[str]:
    """The parts ``cfg`` leaves to be chosen (``None``): architecture, likelihood, prior."""
    return {name for name in ("arch", "likelihood", "prior") if getattr(cfg, name) is None}


class VAE(nn.Module):
    """A variational autoencoder made of five parts.

    Shapes: data ``x`` is ``(B, *data_shape)``; latents ``z`` are ``(B, D)`` (or
    ``(k, B, D)`` with ``k`` importance samples where stated). Log-densities are
    per example, in nats.
    """

    def __init__(
        self,
        encoder: nn.Module,
        family: Family,
        decoder: nn.Module,
        likelihood: Likelihood,
        prior: Prior,
        config: ModelConfig | None = None,
        condition: LabelCondition | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.family = family
        self.decoder = decoder
        self.likelihood = likelihood
        self.prior = prior
        self.config = config
        #: The labels' side of a model conditioned on labels (:mod:`varfam.nets.conditioning`): the
        #: family is built for ``feature_dim + C`` inputs and the decoder for ``D + C``.
        self.condition = condition
        #: Set by :meth:`repeated_rows`: (the batch, its distinct rows, the period).
        self._repeated: tuple[Tensor, int, int] | None = None

    # ---------------------------------------------------------------- building
    @classmethod
    def build(cls, config: ModelConfig | None = None, **overrides: Any) -> VAE:
        """Build a model from a :class:`ModelConfig` and/or keyword overrides.

        Keywords are the fields of :class:`ModelConfig`: ``data_shape``, ``arch``,
        ``arch_options``, ``hidden``, ``latent_dim``, ``family`` (+``family_options``), ``prior``
        (+``prior_options``; ``None`` picks the family's natural prior, recorded in the
        model's config), ``likelihood`` (+``likelihood_options``), and for a model
        conditioned on labels ``condition="label"``, ``n_classes``, ``classes`` and
        ``classifier`` (see :mod:`varfam.nets.conditioning`).
        """
        cfg = ModelConfig(**{**(config.__dict__ if config else {}), **overrides})
        unset = _unset_parts(cfg)
        cfg.arch = cfg.arch or "mlp"  # what VAE.for_data chooses for data that is not a table
        cfg.likelihood = cfg.likelihood or "bernoulli"
        likelihood = LIKELIHOODS.build(
            cfg.likelihood, cfg.data_shape, options=cfg.likelihood_options
        )
        c = cfg.n_classes if cfg.condition else 0  # one-hot y beside h and beside z
        encoder, decoder = ARCHITECTURES.build(
            cfg.arch, cfg.data_shape, cfg.hidden, cfg.latent_dim + c,
            likelihood.params_per_value, options=cfg.arch_options,
        )
        family = FAMILIES.build(
            cfg.family, encoder.feature_dim + c, cfg.latent_dim, options=cfg.family_options
        )
        if cfg.prior is None:  # the family's natural prior (N(0, I), the sphere, a categorical)
            cfg.prior = family.default_prior
        if cfg.prior == family.default_prior:  # e.g. K and temperature of a relaxed categorical
            if "prior" in unset:
                unset |= {f"prior_options.{k}" for k in family.default_prior_options
                          if k not in cfg.prior_options}
            cfg.prior_options = {
                **family.default_prior_options,
                **cfg.prior_options,
            }
        cfg.chosen_from_data = sorted(set(cfg.chosen_from_data) | unset)
        if c and "n_classes" in accepted_options(PRIORS.get(cfg.prior)):  # p(z|y) per class
            cfg.prior_options = {"n_classes": c, **cfg.prior_options}
        prior = PRIORS.build(
            cfg.prior, cfg.latent_dim, cfg.data_shape, options=cfg.prior_options
        )
        condition = None
        if cfg.condition:
            classifier = None
            if cfg.classifier:  # q(y|x): an encoder network of its own and a linear head
                classifier = build_classifier(cfg, likelihood.params_per_value)
            condition = LabelCondition(c, cfg.classes, classifier)
        return cls(encoder, family, decoder, likelihood, prior, cfg, condition)

    @classmethod
    def for_data(cls, data: Dataset, config: ModelConfig | None = None, **overrides: Any) -> VAE:
        """The model that fits ``data``, built from ``config`` and/or keyword overrides.

        The step ``varfam train`` takes between loading the data and training: the
        data's shape; for a table the ``mixed`` likelihood over its columns and the
        ``tabular`` networks; for data with a mask the ``masked`` likelihood; for
        labelled data the classes (and, when ``data.config.labelled`` hid labels, the
        classifier q(y|x) of M2). ``config`` itself is left as it is.

        >>> from varfam.data import load_data
        >>> model = VAE.for_data(load_data("digits"), latent_dim=2, hidden=(16,))
        >>> model.config.data_shape, model.config.likelihood
        ((1, 8, 8), 'bernoulli')
        """
        cfg = ModelConfig(**copy.deepcopy({**(config.__dict__ if config else {}), **overrides}))
        cfg.data_shape = tuple(data.data_shape)
        cfg.chosen_from_data = sorted(set(cfg.chosen_from_data) | _unset_parts(cfg))
        configure_model(cfg, data)
        configure_labels(cfg, data)
        return cls.build(cfg)

    @property
    def latent_dim(self) -> int:
        return self.family.latent_dim

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.likelihood.data_shape

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def uses_labels(self) -> bool:
        """Whether the parts read the label y (``condition="label"``): train with labels."""
        return self.condition is not None

    @property
    def has_classifier(self) -> bool:
        """Whether the model has a classifier q(y|x) (M2, semi-supervised): it can then sum
        a hidden label out and label data itself."""
        return self.condition is not None and self.condition.classifier is not None

    # ---------------------------------------------------------------- checks and modes
    def check_data(self, x: Any, what: str = "data", *, values: bool = False) -> None:
        """Refuse ``x`` (N, *shape) (or a :class:`~varfam.data.Dataset`) whose examples are
        not of this model's ``data_shape``: a :class:`VarfamError` that names both shapes
        and the fix. ``values``: also the likelihood's check of the values
        (:meth:`~varfam.likelihoods.base.Likelihood.check_data`), on a tensor in memory.

        >>> model = VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
        >>> model.check_data(torch.zeros(2, 1, 9, 9))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        varfam.errors.VarfamError: data of shape (1, 9, 9) per example does not fit this ...
        """
        shape = tuple(x.data_shape) if hasattr(x, "data_shape") else tuple(x.shape[1:])
        if shape != tuple(self.data_shape):
            raise VarfamError(
                f"{what} of shape {shape} per example does not fit this model's data_shape "
                f"{tuple(self.data_shape)}; use data like its training data (the same size "
                "and channels)"
            )
        if values:
            self.likelihood.check_data(x)

    @contextmanager
    def evaluating(self, seed: int | None = None) -> Iterator[VAE]:
        """Within the block the model is in eval mode (its mode is restored afterwards),
        and with ``seed`` torch's random state (the CPU's and the model's GPU's) is forked
        and seeded: the draws in the block are reproducible and the caller's random state
        is left as it was. ``seed=None`` draws from the global state as usual.

        >>> model = VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(8,))
        >>> with model.evaluating(seed=0):
        ...     a = model.sample(2)
        >>> with model.evaluating(seed=0):
        ...     b = model.sample(2)
        >>> bool(torch.equal(a, b)), model.training
        (True, True)
        """
        devices = [self.device] if self.device.type == "cuda" else []
        was_training = self.training
        with torch.random.fork_rng(devices=devices, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            self.eval()
            try:
                yield self
            finally:
                self.train(was_training)

    # ---------------------------------------------------------------- labels
    def labels(self, y: Labels | None, n: int) -> Tensor | None:
        """``y`` as int64 labels (n,) on the model's device (an int or name is repeated);
        ``None`` for a model without labels. Float (n, C) soft labels pass through."""
        if self.condition is None:
            return None
        if y is None:
            raise VarfamError(
                "this model is conditioned on labels: give the class, with --label CLASS on "
                "the command line or y= in Python (a class, a list of classes or the data's "
                "labels)"
            )
        if isinstance(y, Tensor) and y.is_floating_point():
            return y.to(self.device)
        out = self.condition.labels(y, n, self.device)
        if out.shape[0] != n:
            raise VarfamError(f"{out.shape[0]} labels were given for {n} examples")
        return out

    def labels_of(self, x: Tensor, y: Labels | None = None) -> Tensor | None:
        """The labels of ``x`` (B, *data_shape): ``y`` when given, else the most probable
        class under q(y|x) (a model with a classifier); ``None`` without labels."""
        if y is None and self.has_classifier:
            return self.classify(x).logits.argmax(-1)
        return self.labels(y, x.shape[0])

    def classify(self, x: Tensor) -> torch.distributions.Categorical:
        """q(y|x) for ``x`` (B, *data_shape): a Categorical over the C classes, batch (B,)."""
        if not self.has_classifier:
            raise VarfamError(
                "this model has no classifier q(y|x); train it semi-supervised (--labelled N) "
                "to get one"
            )
        assert self.condition is not None and self.condition.classifier is not None
        return self.condition.classifier(x)

    def _with_label(self, v: Tensor, y: Tensor | None) -> Tensor:
        """``[v, onehot(y)]`` (N, F + C) for a model conditioned on labels, else ``v``."""
        if self.condition is None:
            return v
        if y is None:
            raise VarfamError("this model is conditioned on labels: give the labels y "
                              "(varfam commands: --label CLASS)")
        return torch.cat([v, self.condition.one_hot(y, v)], -1)

    # ---------------------------------------------------------------- the maps
    def features(self, x: Tensor, y: Labels | None = None) -> Tensor:
        """What the family reads for ``x`` (B, *data_shape): the encoder's features h (B, F),
        full precision, and in a model conditioned on labels ``[h, onehot(y)]`` (B, F + C)."""
        h = _full_precision(self._encoder_rows(x))
        return self._with_label(h, self.labels_of(x, y))

    @contextmanager
    def repeated_rows(self, x: Tensor, distinct: int, period: int) -> Iterator[None]:
        """Within the block, the batch ``x`` (this very tensor) is ``distinct`` rows followed
        by copies of their last ``period`` rows (M2's labelled rows, then its unlabelled
        rows once per class): encoding it runs the encoder network on the distinct rows
        only and repeats their features, the same values and gradients at a fraction of
        the cost. Any other tensor (a VampPrior's pseudo-inputs, a copy) is encoded as
        usual."""
        copies, rest = divmod(x.shape[0] - distinct, period) if period > 0 else (0, 1)
        if not 0 < period <= distinct or rest or copies < 1:
            raise VarfamError(f"a batch of {x.shape[0]} rows is not {distinct} distinct rows "
                              f"and copies of the last {period}")
        before, self._repeated = self._repeated, (x, distinct, period)
        try:
            yield
        finally:
            self._repeated = before

    def _encoder_rows(self, x: Tensor) -> Tensor:
        if self._repeated is None or x is not self._repeated[0]:
            return self.encoder(x)
        _, distinct, period = self._repeated
        h = self.encoder(x[:distinct])
        copies = (x.shape[0] - distinct) // period
        return torch.cat([h, h[distinct - period :].repeat(copies, *[1] * (h.dim() - 1))])

    def encode(self, x: Tensor, y: Labels | None = None) -> Distribution:
        """q(z|x) (or q(z|x, y)) for a batch ``x`` (B, *data_shape): batch (B,), event (D,).

        ``y``: the labels of a model conditioned on labels (see :meth:`labels`); without
        them, a model with a classifier uses its most probable class.
        """
        h = self.features(x, y)
        with fp32(h.device.type):
            return self.family(h)

    def encode_location(self, x: Tensor, y: Labels | None = None) -> Tensor:
        """A point summary of q(z|x[, y]) (its mean where defined), shape (B, D)."""
        h = self.features(x, y)
        with fp32(h.device.type):
            return self.family.location(h)

    def decode(self, z: Tensor, y: Labels | None = None) -> Distribution:
        """p(x|z) (or p(x|z, y)) for latents ``z`` (N, D): batch (N,), event data_shape."""
        params = self.decoder(self._with_label(z, self.labels(y, z.shape[0])))
        with fp32(params.device.type):
            return self.likelihood(_full_precision(params))

    def prior_distribution(self, y: Labels | None = None) -> Distribution:
        """p(z): batch_shape (), event_shape (D,); with labels ``y`` (B,) p(z|y), whose
        batch_shape is (B,) for a prior that reads y and () for one that does not."""
        encode = self.encode if self.condition is None else self._encode_pseudo_inputs
        with fp32():  # whichever autocast is on: finding self.device walks every parameter
            if y is None or self.condition is None:
                return self.prior(encode)
            labels = self.labels(y, 1 if isinstance(y, (int, str)) else len(y))
            assert labels is not None  # a model conditioned on labels turns y into a tensor
            return self.prior.given_label(encode, labels)

    def _encode_pseudo_inputs(self, u: Tensor) -> Distribution:
        """q(z|u_k, y_k) for a prior defined through the encoder (the VampPrior): pseudo-input
        k is given class ``k mod C``, so p(z) stays a mixture of posteriors of every class."""
        assert self.condition is not None  # called for models conditioned on labels only
        y = torch.arange(u.shape[0], device=u.device) % self.condition.n_classes
        return self.encode(u, y)

    def observe(self, x: Tensor) -> Any:
        """What the likelihood computes from ``x`` (B, *data_shape) alone, or None.

        Pass it to :meth:`log_likelihood` to score the same ``x`` under many batches of
        latents without computing it again (the autoregressive likelihood's context).
        """
        with fp32(x.device.type):
            return self.likelihood.observe(x)

    def log_likelihood(
        self, x: Tensor, z: Tensor, observed: Any = None, y: Tensor | None = None
    ) -> Tensor:
        """log p(x|z[, y]) in nats for ``z`` of shape (..., B, D) → (..., B); decodes all at once.

        ``observed``: :meth:`observe` of this ``x``, where the caller has it. ``y``: the
        labels (B,) (or soft labels (B, C)) of ``x``, for a model conditioned on labels.
        """
        return self.decoded_log_likelihood(x, z, observed, y)[0]

    def decoded_log_likelihood(
        self, x: Tensor, z: Tensor, observed: Any = None, y: Tensor | None = None
    ) -> tuple[Tensor, Distribution]:
        """:meth:`log_likelihood` (..., B) and p(x|z[, y]) itself, batch (prod(...) · B,)."""
        lead = z.shape[:-1]
        if y is not None and self.condition is not None:
            y = y.expand(*lead, *y.shape[1:]).reshape(-1, *y.shape[1:])
        flat = z.reshape(-1, z.shape[-1])
        px = self.decode(flat) if y is None else self.decode(flat, y)
        if hasattr(px, "log_prob_tiled"):  # work on x alone done once per example, not per z
            return px.log_prob_tiled(x, tuple(lead), observed), px
        xs = x.expand(*lead[:-1], *x.shape).reshape(-1, *x.shape[1:])
        return px.log_prob(xs).view(lead), px

    # ---------------------------------------------------------------- schedules
    @property
    def hooked_parts(self) -> tuple[Family, Prior, Likelihood]:
        """The parts that take the training hooks (:class:`varfam.parts.TrainingHooks`)."""
        return self.family, self.prior, self.likelihood

    def set_epoch(self, epoch: float) -> None:
        """Tell every part the (fractional) epoch (:class:`varfam.parts.TrainingHooks`)."""
        for part in self.hooked_parts:
            part.set_epoch(epoch)

    def epoch_hook(self) -> Callable[[float], None] | None:
        """:meth:`set_epoch`, or None where neither it nor any part's ``set_epoch`` is
        overridden: most models read no epoch, and a step then calls nothing."""
        if overrides(self.set_epoch, VAE.set_epoch) or any(
            overrides(part.set_epoch, TrainingHooks.set_epoch) for part in self.hooked_parts
        ):
            return self.set_epoch
        return None

    def set_progress(self, progress: float) -> bool:
        """Tell every part the schedule's progress in [0, 1]; True if any part changed the
        set of parameters that train (see :class:`varfam.parts.TrainingHooks`)."""
        changed = [part.set_progress(progress) for part in self.hooked_parts]
        return any(changed)

    # ---------------------------------------------------------------- pictures
    @torch.no_grad()
    def sample(self, n: int, y: Labels | None = None, sampler: Any = None) -> Tensor:
        """``n`` new data points: decoded means of z ~ p(z), shape (n, *data_shape).

        In a model conditioned on labels, ``y`` (one class for all, or n of them) picks
        the classes: z ~ p(z|y), x ~ p(x|z, y); without ``y`` the classes are drawn from
        p(y), uniform.

        ``sampler``: what draws z instead of the prior, a fitted
        :class:`varfam.samplers.Sampler` (``sampler.sample(n, labels)`` → (n, D)), e.g.
        ``fitted_sampler(run_dir, model, "gmm", x)``; ``None`` or ``"prior"``: p(z).
        """
        if isinstance(sampler, str):
            if sampler != "prior":
                raise VarfamError(
                    f"sampler '{sampler}' must be fitted first; pass the sampler object that "
                    f"varfam.samplers.fitted_sampler(run_dir, model, '{sampler}', x) returns"
                )
            sampler = None
        if sampler is not None:
            labels = None
            if self.condition is not None:
                if y is None:
                    y = torch.randint(self.condition.n_classes, (n,), device=self.device)
                labels = self.labels(y, n)
            return self.decode(sampler.sample(n, labels).to(self.device), labels).mean
        if self.condition is None:
            return self.decode(self.prior_distribution().sample((n,))).mean
        if y is None:
            y = torch.randint(self.condition.n_classes, (n,), device=self.device)
        labels = self.labels(y, n)
        p = self.prior_distribution(labels)
        z = p.sample() if p.batch_shape == (n,) else p.sample((n,))
        return self.decode(z, labels).mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor, draws: int = 1, y: Labels | None = None) -> Tensor:
        """Decoded means of z ~ q(z|x[, y]): shape (B, *data_shape), or (draws, B, ...) if
        draws > 1. ``y``: the labels of ``x`` in a model conditioned on labels."""
        labels = self.labels_of(x, y)
        z = self.encode(x, labels).sample((draws,))
        if labels is not None:
            labels = labels.expand(draws, *labels.shape).reshape(-1, *labels.shape[1:])
        out = self.decode(z.reshape(-1, z.shape[-1]), labels).mean.view(draws, *x.shape)
        return out[0] if draws == 1 else out

    # ---------------------------------------------------------------- files
    # Saving and loading live in :mod:`varfam.runs.checkpoint`, which owns this module:
    # ``varfam.save(model, run_dir)`` and ``varfam.load(run_dir)``.
