"""Relaxed discrete families (Gumbel-softmax / Concrete) and the ``categorical`` prior.

- ``gumbel``: z is D/K independent relaxed one-hot vectors of K categories,
  concatenated into (D,) (Jang, Gu & Poole 2017, "Categorical Reparameterization
  with Gumbel-Softmax"; Maddison, Mnih & Teh 2017, "The Concrete Distribution").
  Each group's density is torch's ``RelaxedOneHotCategorical``: a density on the
  first K-1 coordinates of the simplex (``latent_support = "simplex"``).
- ``bernoulli``: z in (0, 1)^D, independent relaxed Bernoulli (binary Concrete)
  variables with logits from h (``latent_support = "unit-cube"``).
- ``categorical`` prior: the uniform relaxed categorical at the same temperature,
  the prior of the relaxed ELBO of Jang et al.; ``binary=True`` gives the relaxed
  Bernoulli(1/2) prior of the ``bernoulli`` family. It learns K and the
  temperature from its own options (``categories``, ``binary``, ``temperature``,
  ...), which must match the family's. :attr:`RelaxedFamily.default_prior_options`
  lists the matching options, and ``VAE.build`` passes them to the family's
  default prior (options the user gives win); a z that does not fit the prior's
  groups ends in a :class:`VarfamError` naming ``--prior-option categories=K``.

Temperature annealing:
``tau(epoch) = max(min_temperature, temperature * exp(-anneal_rate * epoch))``.
Parts cannot see the epoch, so they expose ``set_epoch(epoch)``; the training
loop calls it. The current temperature is a (saved) buffer, so a loaded model
keeps the temperature it was trained at last.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import (
    Distribution,
    Independent,
    RelaxedBernoulli,
    RelaxedOneHotCategorical,
    TransformedDistribution,
)
from torch.distributions.transforms import ReshapeTransform

from varfam.errors import VarfamError
from varfam.families.base import Family
from varfam.parts import TrainingHooks
from varfam.priors import Encode, Prior
from varfam.registry import FAMILIES, PRIORS

__all__ = [
    "annealed_temperature",
    "RelaxedOneHotGroups",
    "RelaxedFamily",
    "GumbelSoftmaxFamily",
    "RelaxedBernoulliFamily",
    "CategoricalPrior",
]


def annealed_temperature(initial: float, rate: float, minimum: float, epoch: float) -> float:
    """``max(minimum, initial * exp(-rate * epoch))``; ``initial`` when ``rate == 0``."""
    if rate == 0:
        return float(initial)
    return max(float(minimum), float(initial) * math.exp(-rate * epoch))


class _Annealed(TrainingHooks, nn.Module):
    """Holds the temperature options, checks them, and the current temperature buffer."""

    def _init_temperature(
        self, kind: str, name: str, temperature: float, anneal_rate: float, min_temperature: float
    ) -> None:
        where = "--family-option" if kind == "family" else "--prior-option"
        if not temperature > 0:
            raise VarfamError(
                f"{kind} '{name}': temperature must be positive, got {temperature}; "
                f"pass {where} temperature=0.5 (or another positive value)"
            )
        if not anneal_rate >= 0:
            raise VarfamError(
                f"{kind} '{name}': anneal_rate must be >= 0, got {anneal_rate}; "
                f"pass {where} anneal_rate=0 to keep the temperature fixed"
            )
        if anneal_rate > 0 and not 0 < min_temperature <= temperature:
            raise VarfamError(
                f"{kind} '{name}': min_temperature must be in (0, temperature={temperature}], "
                f"got {min_temperature}; pass {where} min_temperature=T with 0 < T <= temperature"
            )
        self.initial_temperature = float(temperature)
        self.anneal_rate = float(anneal_rate)
        self.min_temperature = float(min_temperature)
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    def set_epoch(self, epoch: float) -> None:
        """Set the temperature for (fractional) ``epoch`` by the annealing schedule."""
        tau = annealed_temperature(
            self.initial_temperature, self.anneal_rate, self.min_temperature, epoch
        )
        self.temperature.fill_(tau)


class _ClampedRelaxedOneHot(RelaxedOneHotCategorical):
    """``RelaxedOneHotCategorical`` whose samples never underflow to an exact 0.

    At low temperature a coordinate can round to 0, where ``log_prob`` is not
    finite; it is raised to the smallest normal number instead.
    """

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        z = super().rsample(sample_shape)
        return z.clamp_min(torch.finfo(z.dtype).tiny)


class RelaxedOneHotGroups(TransformedDistribution):
    """G independent relaxed one-hot vectors of K categories, flattened: event (G*K,).

    ``logits`` (..., G, K); ``temperature`` a positive scalar tensor. ``log_prob``
    (nats, shape batch) is a density on the first K-1 coordinates of each group.

    >>> q = RelaxedOneHotGroups(torch.tensor(0.5), torch.zeros(3, 2, 4))
    >>> z = q.rsample()
    >>> z.shape, q.log_prob(z).shape
    (torch.Size([3, 8]), torch.Size([3]))
    """

    def __init__(self, temperature: Tensor, logits: Tensor) -> None:
        self.temperature, self.logits = temperature, logits
        groups, categories = logits.shape[-2:]
        self.categories = categories
        base = _ClampedRelaxedOneHot(temperature, logits=logits, validate_args=False)
        super().__init__(
            Independent(base, 1, validate_args=False),
            ReshapeTransform((groups, categories), (groups * categories,)),
            validate_args=False,
        )

    def expand(self, batch_shape, _instance=None):
        shape = torch.Size(batch_shape) + self.logits.shape[-2:]
        return type(self)(self.temperature, self.logits.expand(shape))

    @property
    def probs(self) -> Tensor:
        """Category probabilities, flattened like z: shape batch + (G*K,)."""
        return torch.softmax(self.logits, -1).flatten(-2)

    def log_prob(self, value: Tensor) -> Tensor:
        groups = value.unflatten(-1, (-1, self.categories))
        # checked in eager steps and evaluation only: a compiled step would break into
        # graphs at this data-dependent branch (and a DReG step be compiled in pieces)
        if not torch.compiler.is_compiling() and not bool(
            ((groups.sum(-1) - 1).abs() < 1e-3).all() and (value >= 0).all()
        ):
            raise VarfamError(
                f"z is not made of relaxed one-hot groups of {self.categories} values summing "
                f"to 1; the 'categorical' prior must match the family: pass --prior-option "
                f"categories=K with the family's K (or binary=true for --family bernoulli)"
            )
        return super().log_prob(value)


class RelaxedFamily(Family, _Annealed):
    """Shared parts of the relaxed discrete families: temperature, annealing, prior options."""

    default_prior = "categorical"
    name: str

    def forward(self, h: Tensor) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def default_prior_options(self) -> dict[str, Any]:
        """Options of the ``categorical`` prior that match this family."""
        return {
            "temperature": self.initial_temperature,
            "anneal_rate": self.anneal_rate,
            "min_temperature": self.min_temperature,
        }


@FAMILIES.register(
    "gumbel",
    "relaxed categorical (Gumbel-softmax / Concrete): D/K relaxed one-hot vectors of K categories",
    "Jang, Gu & Poole 2017, Categorical Reparameterization with Gumbel-Softmax; "
    "Maddison, Mnih & Teh 2017, The Concrete Distribution",
)
class GumbelSoftmaxFamily(RelaxedFamily):
    """q(z|x): D/K independent relaxed one-hot categoricals with logits ``W h + b``.

    Options: ``categories`` K (default 10; D must be a multiple of K),
    ``temperature`` (default 0.5), ``anneal_rate`` (per epoch, default 0) and
    ``min_temperature`` (floor of the annealing, default 0.1).

    >>> fam = GumbelSoftmaxFamily(16, 20)
    >>> q = fam(torch.randn(5, 16))
    >>> q.rsample().shape, q.log_prob(q.rsample()).shape
    (torch.Size([5, 20]), torch.Size([5]))
    """

    name = "gumbel"
    latent_support = "simplex"
    contract_options = {"categories": 2}

    def __init__(
        self,
        feature_dim: int,
        latent_dim: int,
        *,
        categories: int = 10,
        temperature: float = 0.5,
        anneal_rate: float = 0.0,
        min_temperature: float = 0.1,
    ) -> None:
        super().__init__(feature_dim, latent_dim)
        self.categories = _check_groups("family", "gumbel", latent_dim, categories)
        self._init_temperature("family", "gumbel", temperature, anneal_rate, min_temperature)
        self.logits = nn.Linear(feature_dim, latent_dim)

    def _grouped_logits(self, h: Tensor) -> Tensor:
        return self.logits(h).unflatten(-1, (-1, self.categories))

    def forward(self, h: Tensor) -> Distribution:
        return RelaxedOneHotGroups(self.temperature.to(h.dtype), self._grouped_logits(h))

    def location(self, h: Tensor) -> Tensor:
        """The category probabilities softmax(logits) per group, flattened: (B, D)."""
        return torch.softmax(self._grouped_logits(h), -1).flatten(-2)

    @property
    def default_prior_options(self) -> dict[str, Any]:
        return {"categories": self.categories, **super().default_prior_options}


@FAMILIES.register(
    "bernoulli",
    "relaxed Bernoulli (binary Concrete) latents in (0, 1)^D",
    "Maddison, Mnih & Teh 2017, The Concrete Distribution; Jang, Gu & Poole 2017",
)
class RelaxedBernoulliFamily(RelaxedFamily):
    """q(z|x) = prod_d RelaxedBernoulli(temperature, logits_d(h)) on (0, 1)^D.

    Options: ``temperature`` (default 0.5), ``anneal_rate``, ``min_temperature``
    as for ``gumbel``.
    """

    name = "bernoulli"
    latent_support = "unit-cube"
    contract_options: dict = {}

    def __init__(
        self,
        feature_dim: int,
        latent_dim: int,
        *,
        temperature: float = 0.5,
        anneal_rate: float = 0.0,
        min_temperature: float = 0.1,
    ) -> None:
        super().__init__(feature_dim, latent_dim)
        self._init_temperature("family", "bernoulli", temperature, anneal_rate, min_temperature)
        self.logits = nn.Linear(feature_dim, latent_dim)

    def forward(self, h: Tensor) -> Distribution:
        return Independent(RelaxedBernoulli(self.temperature.to(h.dtype), logits=self.logits(h)), 1)

    def location(self, h: Tensor) -> Tensor:
        """The Bernoulli probabilities sigmoid(logits): (B, D)."""
        return torch.sigmoid(self.logits(h))

    @property
    def default_prior_options(self) -> dict[str, Any]:
        return {"binary": True, **super().default_prior_options}


def _check_groups(kind: str, name: str, latent_dim: int, categories: Any) -> int:
    where = "--family-option" if kind == "family" else "--prior-option"
    numeric = isinstance(categories, (int, float)) and not isinstance(categories, bool)
    if not numeric or not float(categories).is_integer() or categories < 2:
        raise VarfamError(
            f"{kind} '{name}': categories must be an integer >= 2, got {categories!r}; "
            f"pass {where} categories=K"
        )
    k = int(categories)
    if latent_dim % k:
        raise VarfamError(
            f"{kind} '{name}': latent_dim {latent_dim} is not a multiple of categories {k}; "
            f"use --latent-dim {k * max(1, round(latent_dim / k))} or {where} categories=K "
            f"with K dividing {latent_dim}"
        )
    return k


def _default_categories(latent_dim: int, categories: Any) -> Any:
    if categories is not None:
        return categories
    return 10 if latent_dim % 10 == 0 else max(2, latent_dim)


@PRIORS.register(
    "categorical",
    "uniform relaxed categorical (or relaxed Bernoulli(1/2) with binary=true) at a temperature",
    "Jang, Gu & Poole 2017; Maddison, Mnih & Teh 2017",
)
class CategoricalPrior(Prior, _Annealed):
    """p(z): D/K uniform relaxed one-hot categoricals of K categories at temperature tau.

    Options: ``categories`` K (D must be a multiple of it), ``binary`` (D relaxed
    Bernoulli(1/2) variables instead, for the ``bernoulli`` family; then
    ``categories`` must be left out), ``temperature``, ``anneal_rate``,
    ``min_temperature`` (defaults 0.5, 0, 0.1, as the families'). They must match
    the family's; ``VAE.build`` fills them in from the family when this is its
    default prior, otherwise give them, e.g. ``--prior-option categories=5``.
    Without ``categories`` (and not ``binary``), K is 10 when 10 divides D, else D
    (one categorical over all coordinates).
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: tuple[int, ...],
        *,
        categories: int | None = None,
        binary: bool = False,
        temperature: float = 0.5,
        anneal_rate: float = 0.0,
        min_temperature: float = 0.1,
    ) -> None:
        super().__init__(latent_dim, data_shape)
        if binary and categories is not None:
            raise VarfamError(
                "prior 'categorical': binary=true (relaxed Bernoulli) takes no categories; "
                "drop --prior-option categories"
            )
        self.binary = bool(binary)
        self.categories = (
            None
            if binary
            else _check_groups(
                "prior", "categorical", latent_dim, _default_categories(latent_dim, categories)
            )
        )
        self._init_temperature("prior", "categorical", temperature, anneal_rate, min_temperature)

    def forward(self, encode: Encode | None = None) -> Distribution:
        tau = self.temperature
        if self.binary:
            return Independent(RelaxedBernoulli(tau, logits=tau.new_zeros(self.latent_dim)), 1)
        logits = tau.new_zeros(self.latent_dim // self.categories, self.categories)
        return RelaxedOneHotGroups(tau, logits)
