"""Hyperspherical families: von Mises–Fisher and Power Spherical, and the uniform-sphere prior.

Latents live on the unit sphere S^{D-1} of R^D; densities are against its
surface measure (``latent_support = "sphere"``), in nats.

- ``vmf``: von Mises–Fisher, ``q(z) = C_D(kappa) exp(kappa mu . z)`` (Davidson,
  Falorsi, De Cao, Kipf & Tomczak 2018, "Hyperspherical Variational
  Auto-Encoders"). Sampled with Wood's (1994) rejection sampler; the gradient in
  ``kappa`` is the implicit reparameterization gradient of the accepted ``w``
  (Figurnov, Mohamed & Mnih 2018), which is exact: no score-function correction
  term is needed, and every objective sees an unbiased pathwise gradient.
- ``powerspherical``: ``q(z) ∝ (1 + mu . z)^kappa`` (De Cao & Aziz 2020, "The
  Power Spherical distribution"), sampled exactly through a Beta variable.
- ``uniform-sphere``: the prior ``p(z) = 1 / |S^{D-1}|``; both families have a
  closed-form KL to it, registered with ``torch.distributions.kl.register_kl``.

Both families map ``h`` to ``mu = normalize(W h + b)`` and
``kappa = min(softplus(w h + c) + min_concentration, max_concentration)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Beta, Distribution, constraints, register_kl

from varfam.errors import VarfamError
from varfam.families._sphere_math import householder_rotate, sample_vmf_w, vmf_normalizer
from varfam.families.base import Family
from varfam.priors import Encode, Prior
from varfam.registry import FAMILIES, PRIORS

__all__ = [
    "sphere",
    "log_sphere_area",
    "VonMisesFisher",
    "PowerSpherical",
    "UniformSphere",
    "UniformSpherePrior",
    "VonMisesFisherFamily",
    "PowerSphericalFamily",
]


class _Sphere(constraints.Constraint):
    """Unit vectors along the last dimension (tolerance 1e-4, for float32 inputs)."""

    event_dim = 1

    def check(self, value: Tensor) -> Tensor:
        return (torch.linalg.vector_norm(value, dim=-1) - 1).abs() < 1e-4

    def __repr__(self) -> str:
        return "Sphere()"


sphere = _Sphere()


def log_sphere_area(dim: int) -> float:
    """``log |S^{dim-1}| = log(2 pi^{dim/2} / Gamma(dim/2))``, in nats."""
    return math.log(2) + dim / 2 * math.log(math.pi) - math.lgamma(dim / 2)


def _tangent_sample(w: Tensor, shape: torch.Size, dim: int) -> Tensor:
    """``[w, sqrt(1 - w^2) v]`` with v uniform on S^{dim-2}: shape ``shape + (dim,)``, float64."""
    v = F.normalize(torch.randn(*shape, dim - 1, dtype=torch.float64, device=w.device), dim=-1)
    radial = torch.sqrt(((1 - w) * (1 + w)).clamp_min(0)).unsqueeze(-1)
    return torch.cat([w.unsqueeze(-1), radial * v], dim=-1)


class _SphericalDistribution(Distribution):
    """Shared parts of the location–concentration distributions on S^{D-1}."""

    arg_constraints = {"loc": sphere, "concentration": constraints.positive}
    support = sphere
    has_rsample = True

    def __init__(self, loc: Tensor, concentration: Tensor, validate_args: bool | None = None):
        self.loc, self.concentration = loc, concentration.expand(loc.shape[:-1])
        self._normalizer: tuple[Tensor, Tensor] | None = None
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    @property
    def dim(self) -> int:
        return self.event_shape[0]

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape + self.event_shape)
        new.concentration = self.concentration.expand(batch_shape)
        new._normalizer = None
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _rotate(self, w: Tensor, shape: torch.Size) -> Tensor:
        y = _tangent_sample(w, shape, self.dim)
        return householder_rotate(y, self.loc.to(torch.float64)).to(self.loc.dtype)

    @property
    def mode(self) -> Tensor:
        return self.loc


class VonMisesFisher(_SphericalDistribution):
    """vMF(loc, concentration) on S^{D-1}: density ``C_D(kappa) exp(kappa loc . z)``.

    ``loc`` (..., D) unit vectors, ``concentration`` (...) positive; batch ``loc.shape[:-1]``,
    event (D,). ``log C_D(k) = (D/2-1) log k - (D/2) log(2 pi) - log I_{D/2-1}(k)``.

    >>> q = VonMisesFisher(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([10.0]))
    >>> z = q.rsample((4,))
    >>> z.shape, q.log_prob(z).shape
    (torch.Size([4, 1, 3]), torch.Size([4, 1]))
    """

    def _bessel(self) -> tuple[Tensor, Tensor]:
        """``(log C_D(kappa), A_D(kappa))``, computed once per distribution (the density,
        the KL and the sampler's gradient all need them)."""
        if self._normalizer is None:
            self._normalizer = vmf_normalizer(self.concentration, self.dim)
        return self._normalizer

    def log_normalizer(self) -> Tensor:
        """``log C_D(kappa)`` in float64, shape batch_shape."""
        return self._bessel()[0]

    def mean_resultant_length(self) -> Tensor:
        """``A_D(kappa) = E[loc . z] = I_{D/2}(kappa) / I_{D/2-1}(kappa)``, float64."""
        return self._bessel()[1]

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(sample_shape)[:-1]
        mean = self._bessel()[1].detach()
        w = sample_vmf_w(self.concentration.expand(shape), self.dim, mean)
        return self._rotate(w, shape)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        dot = (value.to(torch.float64) * self.loc.to(torch.float64)).sum(-1)
        out = self.log_normalizer() + self.concentration.to(torch.float64) * dot
        return out.to(self.loc.dtype)

    @property
    def mean(self) -> Tensor:
        return self.mean_resultant_length().to(self.loc.dtype).unsqueeze(-1) * self.loc

    def entropy(self) -> Tensor:
        k = self.concentration.to(torch.float64)
        out = -self.log_normalizer() - k * self.mean_resultant_length()
        return out.to(self.loc.dtype)


class PowerSpherical(_SphericalDistribution):
    """Power Spherical(loc, concentration) on S^{D-1}: density ``C(kappa) (1 + loc . z)^kappa``.

    With ``a = (D-1)/2 + kappa`` and ``b = (D-1)/2``:
    ``log C = -[(a+b) log 2 + b log pi + lgamma(a) - lgamma(a+b)]``; sampling is
    ``w = 2t - 1``, ``t ~ Beta(a, b)`` (reparameterized), then a Householder
    reflection (De Cao & Aziz 2020).
    """

    def _beta_params(self) -> tuple[Tensor, Tensor]:
        k = self.concentration.to(torch.float64)
        b = torch.full_like(k, (self.dim - 1) / 2)
        return b + k, b

    def log_normalizer(self) -> Tensor:
        """``log C(kappa)`` in float64, shape batch_shape."""
        a, b = self._beta_params()
        return -(
            (a + b) * math.log(2) + b * math.log(math.pi) + torch.lgamma(a) - torch.lgamma(a + b)
        )

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(sample_shape)[:-1]
        a, b = self._beta_params()
        t = Beta(a.expand(shape), b.expand(shape)).rsample()
        return self._rotate(2 * t - 1, shape)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        dot = (value.to(torch.float64) * self.loc.to(torch.float64)).sum(-1)
        k = self.concentration.to(torch.float64)
        return (self.log_normalizer() + k * torch.log1p(dot.clamp_min(-1))).to(self.loc.dtype)

    @property
    def mean(self) -> Tensor:
        a, b = self._beta_params()
        return ((a - b) / (a + b)).to(self.loc.dtype).unsqueeze(-1) * self.loc

    def entropy(self) -> Tensor:
        a, b = self._beta_params()
        k = self.concentration.to(torch.float64)
        out = -self.log_normalizer() - k * (math.log(2) + torch.digamma(a) - torch.digamma(a + b))
        return out.to(self.loc.dtype)


class UniformSphere(Distribution):
    """The uniform distribution on S^{D-1}: ``log p(z) = -log |S^{D-1}|``; batch (), event (D,).

    ``anchor`` is any tensor whose device and dtype the samples take.
    """

    arg_constraints: dict = {}
    support = sphere

    def __init__(self, dim: int, anchor: Tensor | None = None, validate_args=None) -> None:
        self.dim = dim
        self._anchor = anchor if anchor is not None else torch.zeros(())
        super().__init__(torch.Size(), torch.Size([dim]), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != torch.Size():
            raise NotImplementedError("UniformSphere has batch shape () only")
        return self

    def sample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        a = self._anchor
        return F.normalize(torch.randn(shape, dtype=a.dtype, device=a.device), dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return torch.full(
            value.shape[:-1], -log_sphere_area(self.dim), dtype=value.dtype, device=value.device
        )

    def entropy(self) -> Tensor:
        a = self._anchor
        return torch.tensor(log_sphere_area(self.dim), dtype=a.dtype, device=a.device)


def _check_same_sphere(q: _SphericalDistribution, p: UniformSphere) -> None:
    if q.dim != p.dim:
        raise ValueError(f"KL between spheres of different dimension: {q.dim} and {p.dim}")


@register_kl(VonMisesFisher, UniformSphere)
def _kl_vmf_uniform(q: VonMisesFisher, p: UniformSphere) -> Tensor:
    """``KL = kappa A_D(kappa) + log C_D(kappa) + log |S^{D-1}|`` (nats, batch_shape)."""
    _check_same_sphere(q, p)
    k = q.concentration.to(torch.float64)
    kl = k * q.mean_resultant_length() + q.log_normalizer() + log_sphere_area(q.dim)
    return kl.to(q.loc.dtype)


@register_kl(PowerSpherical, UniformSphere)
def _kl_powerspherical_uniform(q: PowerSpherical, p: UniformSphere) -> Tensor:
    """``KL = log |S^{D-1}| - H(q)`` (nats, batch_shape)."""
    _check_same_sphere(q, p)
    return log_sphere_area(q.dim) - q.entropy()


def _check_sphere_dim(kind: str, name: str, latent_dim: int) -> None:
    if latent_dim < 2:
        raise VarfamError(
            f"{kind} '{name}' lives on the sphere S^(D-1) and needs latent_dim >= 2, "
            f"got {latent_dim}; use --latent-dim 2 or more"
        )


@PRIORS.register("uniform-sphere", "uniform distribution on the unit sphere S^(D-1)")
class UniformSpherePrior(Prior):
    """p(z) = 1 / |S^{D-1}|: the prior of the hyperspherical families (no options)."""

    def __init__(self, latent_dim: int, data_shape: tuple[int, ...]) -> None:
        _check_sphere_dim("prior", "uniform-sphere", latent_dim)
        super().__init__(latent_dim, data_shape)
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def forward(self, encode: Encode | None = None) -> Distribution:
        return UniformSphere(self.latent_dim, self._anchor)


class _SphericalFamily(Family):
    """Heads ``loc = normalize(W h + b)`` (B, D) and ``concentration`` (B,) in [min, max]."""

    default_prior = "uniform-sphere"
    latent_support = "sphere"
    contract_options: dict = {}
    distribution: type[_SphericalDistribution]
    name: str

    def __init__(
        self,
        feature_dim: int,
        latent_dim: int,
        *,
        min_concentration: float = 1.0,
        max_concentration: float = 1e4,
    ) -> None:
        _check_sphere_dim("family", self.name, latent_dim)
        if not 0 < min_concentration < max_concentration:
            raise VarfamError(
                f"family '{self.name}' needs 0 < min_concentration < max_concentration, got "
                f"{min_concentration} and {max_concentration}; fix the --family-option values"
            )
        super().__init__(feature_dim, latent_dim)
        self.min_concentration = float(min_concentration)
        self.max_concentration = float(max_concentration)
        self.loc = nn.Linear(feature_dim, latent_dim)
        self.concentration = nn.Linear(feature_dim, 1)

    def forward(self, h: Tensor) -> Distribution:
        loc = F.normalize(self.loc(h), dim=-1)
        kappa = F.softplus(self.concentration(h)).squeeze(-1) + self.min_concentration
        return self.distribution(loc, kappa.clamp_max(self.max_concentration))

    def location(self, h: Tensor) -> Tensor:
        """The mean direction ``mu`` (B, D): the mode, a point on the sphere."""
        return F.normalize(self.loc(h), dim=-1)


@FAMILIES.register(
    "vmf",
    "von Mises-Fisher on the sphere S^(D-1); Wood's sampler, implicit gradient in kappa",
    "Davidson, Falorsi, De Cao, Kipf & Tomczak 2018, Hyperspherical Variational Auto-Encoders",
)
class VonMisesFisherFamily(_SphericalFamily):
    """q(z|x) = vMF(mu(h), kappa(h)) on S^{D-1}.

    Options: ``min_concentration`` (default 1, as in Davidson et al.) and
    ``max_concentration`` (default 1e4; beyond it float32 latents cannot resolve
    the spread ``~ sqrt(D) / kappa``).

    >>> fam = VonMisesFisherFamily(16, 3)
    >>> q = fam(torch.randn(5, 16))
    >>> q.rsample().shape, q.log_prob(q.rsample()).shape
    (torch.Size([5, 3]), torch.Size([5]))
    """

    name = "vmf"
    distribution = VonMisesFisher


@FAMILIES.register(
    "powerspherical",
    "Power Spherical on the sphere S^(D-1); exact reparameterized sampling via Beta",
    "De Cao & Aziz 2020, The Power Spherical distribution",
)
class PowerSphericalFamily(_SphericalFamily):
    """q(z|x) = PowerSpherical(mu(h), kappa(h)) on S^{D-1}; options as for ``vmf``."""

    name = "powerspherical"
    distribution = PowerSpherical
