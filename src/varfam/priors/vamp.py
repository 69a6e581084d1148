"""The VampPrior: the mixture of the variational posteriors of K learned pseudo-inputs.

Tomczak & Welling 2018, "VAE with a VampPrior":

    p(z) = 1/K Σ_k q(z | u_k),

where ``u_1 … u_K`` are learned pseudo-inputs of the data's shape and ``q`` is the
model's own encoder and variational family (any family: the prior calls
``encode(u)``). The pseudo-inputs are trained jointly with the VAE; gradients
also reach the encoder through the prior.

**Pseudo-inputs.** The paper produces them with a linear layer followed by a
hardtanh into [0, 1], initialized from a narrow normal distribution (or from
training images). Here ``u = sigmoid(raw)`` (option ``pseudo_inputs="unit"``, the
default, for images in [0, 1]) so every ``u`` is a valid image and no gradient is
ever cut off by a flat hardtanh; ``raw`` starts as N(0, 1) noise, so the
pseudo-inputs begin as distinct noise images spread over (0, 1).
``pseudo_inputs="real"`` leaves ``u = raw`` unconstrained (for standardized,
real-valued data). :meth:`VampPrior.initialize_from` copies K training examples
instead, the paper's alternative start.

**Cost.** Every evaluation of the prior encodes the K pseudo-inputs, so a
training step costs about as much as one with K more examples; ``log_prob`` of
N points evaluates N·K component densities. The paper uses K = 500 on MNIST;
the default here is K = 100, a fifth of that extra encoder work (pass
``components=500`` for the paper's setting).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from varfam.errors import VarfamError
from varfam.priors.base import Encode, Prior, positive_int
from varfam.registry import PRIORS

__all__ = ["VampPrior", "VampMixture", "diagonal_normal_params"]

_SUPPORTS = ("unit", "real")


class VampMixture(MixtureSameFamily):
    """The uniform mixture ``1/K Σ_k q(z | u_k)`` of a batch-(K,) distribution ``components``.

    ``like`` is any floating tensor on the device and dtype of the mixture weights.

    batch_shape ``()``, event_shape ``(D,)``. ``log_prob(z)`` for ``z`` (..., D) is
    ``logsumexp_k log q(z | u_k) - log K`` of shape (...); the value is expanded to
    (..., K, D) explicitly so that families whose ``log_prob`` only accepts
    values of their full batch shape work too. ``sample`` draws k uniformly, then
    ``z ~ q(z | u_k)``.
    """

    def __init__(self, components: Distribution, like: Tensor) -> None:
        if len(components.batch_shape) != 1:
            raise ValueError("VampMixture needs components with batch_shape (K,)")
        logits = like.new_zeros(components.batch_shape[0])
        super().__init__(Categorical(logits=logits), components, validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        k, event = self._num_component, self.event_shape
        diagonal = diagonal_normal_params(self.component_distribution)
        if diagonal is not None:
            log_q = _diagonal_normal_log_prob_matrix(value, *diagonal)
            return torch.logsumexp(log_q, dim=-1) - math.log(k)
        z = value.unsqueeze(-1 - len(event))
        z = z.expand(*z.shape[: -1 - len(event)], k, *event)
        log_q = self.component_distribution.log_prob(z)  # (..., K)
        return torch.logsumexp(log_q, dim=-1) - math.log(k)


def diagonal_normal_params(d: Distribution) -> tuple[Tensor, Tensor] | None:
    """(loc, scale), each (K, D), when ``d`` is ``Independent(Normal, 1)``; else ``None``."""
    if (
        isinstance(d, Independent)
        and isinstance(d.base_dist, Normal)
        and d.reinterpreted_batch_ndims == 1
    ):
        return d.base_dist.loc, d.base_dist.scale
    return None


def _diagonal_normal_log_prob_matrix(z: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """log N(z_i; loc_k, diag(scale_k²)) for every z (..., D) and component k: (..., K).

    The quadratic form is expanded into matrix products,
    ``Σ_d (z_d − μ_kd)² / σ_kd² = z² · (1/σ_k²) − 2 z · (μ_k/σ_k²) + Σ_d μ_kd²/σ_kd²``,
    so N points against K components cost one (N, D) × (D, K) product instead of an
    (N, K, D) tensor. The products run in float64 to keep the cancellation exact
    for small scales.
    """
    shape = z.shape[:-1]
    zf = z.reshape(-1, z.shape[-1]).double()
    inv_var = scale.double().pow(-2)  # (K, D)
    quad = (
        (zf * zf) @ inv_var.T
        - 2.0 * zf @ (loc.double() * inv_var).T
        + (loc.double().pow(2) * inv_var).sum(-1)
    )
    const = scale.double().log().sum(-1) + 0.5 * z.shape[-1] * math.log(2 * math.pi)
    return (-0.5 * quad - const).to(z.dtype).reshape(*shape, -1)


@PRIORS.register(
    "vamp",
    "VampPrior: mixture of q(z|u_k) over K learned pseudo-inputs (option components, "
    "default 100); works with any family",
    "Tomczak & Welling 2018, VAE with a VampPrior",
)
class VampPrior(Prior):
    """p(z) = 1/K Σ_k q(z | u_k) with K = ``components`` learned pseudo-inputs u_k.

    ``forward(encode)`` needs the model's encoder (``model.prior_distribution()``
    passes it). Parameter ``raw`` has shape (K, *data_shape); :meth:`pseudo_inputs`
    maps it into the data's range (see the module docstring).

    >>> from varfam.families import DiagonalGaussian
    >>> fam = DiagonalGaussian(4, 2)
    >>> prior = VampPrior(2, (4,), components=3)
    >>> p = prior(lambda u: fam(u))
    >>> p.batch_shape, p.event_shape, p.log_prob(torch.zeros(5, 2)).shape
    (torch.Size([]), torch.Size([2]), torch.Size([5]))
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: tuple[int, ...],
        *,
        components: int = 100,
        pseudo_inputs: str = "unit",
    ) -> None:
        super().__init__(latent_dim, data_shape)
        self.components = positive_int("vamp prior", "components", components)
        if pseudo_inputs not in _SUPPORTS:
            raise VarfamError(
                f"vamp prior: option pseudo_inputs must be one of {', '.join(_SUPPORTS)}, "
                f"got {pseudo_inputs!r}"
            )
        self.support = pseudo_inputs
        self.raw = nn.Parameter(torch.randn(components, *self.data_shape))

    def pseudo_inputs(self) -> Tensor:
        """The K pseudo-inputs u_k, shape (K, *data_shape); in (0, 1) when support is unit."""
        return torch.sigmoid(self.raw) if self.support == "unit" else self.raw

    @torch.no_grad()
    def initialize_from(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """Set the pseudo-inputs to K examples drawn without replacement from ``x`` (N, ...).

        With ``N < K`` examples are reused. For the unit support, values are
        clipped to [1e-3, 1 - 1e-3] before the logit.
        """
        if tuple(x.shape[1:]) != self.data_shape:
            raise VarfamError(
                f"vamp prior: examples of shape {tuple(x.shape[1:])} cannot initialize "
                f"pseudo-inputs of shape {self.data_shape}"
            )
        n = x.shape[0]
        reps = -(-self.components // n)
        index = torch.cat([torch.randperm(n, generator=generator) for _ in range(reps)])
        u = x[index[: self.components]].to(self.raw)
        self.raw.copy_(torch.logit(u.clamp(1e-3, 1 - 1e-3)) if self.support == "unit" else u)

    def forward(self, encode: Encode | None = None) -> Distribution:
        if encode is None:
            raise ValueError(
                "the VampPrior is defined through the encoder: call it as prior(model.encode) "
                "or use model.prior_distribution()"
            )
        components = encode(self.pseudo_inputs())
        if tuple(components.batch_shape) != (self.components,):
            raise ValueError(
                f"encode(u) returned batch_shape {tuple(components.batch_shape)}, "
                f"expected ({self.components},)"
            )
        return VampMixture(components, like=self.raw)
