"""Autoregressive and coupling flows with the encoder features h as context: IAF and Real NVP.

Unlike planar, radial and Sylvester flows, whose parameters are linear heads of h,
these steps are global networks that read h as an extra input (their context), as
in the papers.

* IAF: Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling 2016, "Improved
  Variational Inference with Inverse Autoregressive Flow" (NeurIPS). Each step is a
  MADE (Germain, Gregor, Murray & Larochelle 2015, "MADE: Masked Autoencoder for
  Distribution Estimation") giving ``m, s`` from ``z`` and h, and the LSTM-style
  update ``z' = sigma * z + (1 - sigma) * m`` with ``sigma = sigmoid(s)``; the
  variable order is reversed between steps. Sampling and scoring one's own samples
  take one pass per step; the inverse (``log_prob`` of an arbitrary z) takes D
  sequential passes per step.
* Real NVP: Dinh, Sohl-Dickstein & Bengio 2017, "Density estimation using Real NVP"
  (ICLR). Affine coupling layers with alternating masks and log-scales bounded by
  a learned multiple of tanh; both directions are one pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from varfam.families.flows import FlowFamily, FlowTransform, check_positive
from varfam.parts import network_precision
from varfam.registry import FAMILIES

__all__ = ["MaskedLinear", "MADE", "IAFTransform", "CouplingNet", "CouplingTransform",
           "InverseAutoregressiveFlow", "RealNVPFlow"]

#: Initial bias of IAF's gate s: sigmoid(1) ~ 0.73 keeps early steps close to the identity.
GATE_BIAS = 1.0


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 ``mask`` (out, in)."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor) -> None:
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MADE(nn.Module):
    """Masked autoencoder: z (..., B, D) and context (B, H) → (..., B, outputs, D).

    Output ``[..., j, i]`` depends only on the coordinates of z that come before
    ``i`` in ``order`` (a permutation of ``range(D)``), and on the context. Two
    masked hidden layers of width ``hidden`` with ELU; the context (the projection
    of h made once by :meth:`context`) is added to the first.
    """

    def __init__(
        self, latent_dim: int, feature_dim: int, hidden: int, order: Tensor, outputs: int = 2
    ) -> None:
        super().__init__()
        d = latent_dim
        self.latent_dim, self.outputs = d, outputs
        deg_in = torch.empty(d, dtype=torch.long)
        deg_in[order] = torch.arange(1, d + 1)
        deg_hidden = torch.arange(hidden) % d  # degree 0: units that see the context only
        deg_out = deg_in.repeat(outputs)
        self.inp = MaskedLinear(d, hidden, deg_hidden[:, None] >= deg_in[None, :])
        self.ctx = nn.Linear(feature_dim, hidden, bias=False)
        self.mid = MaskedLinear(hidden, hidden, deg_hidden[:, None] >= deg_hidden[None, :])
        self.out = MaskedLinear(hidden, outputs * d, deg_out[:, None] > deg_hidden[None, :])

    def context(self, h: Tensor) -> Tensor:
        """The projection of the features that every call adds to the first layer: (B, hidden)."""
        with network_precision(h.device.type):
            return self.ctx(h)

    def forward(self, z: Tensor, context: Tensor) -> Tensor:
        # bf16 matrix products in bf16 training (like the encoder's); m and s are cast
        # back, so the step and its log-determinant use the very values computed
        with network_precision(z.device.type):
            a = F.elu(self.inp(z) + context)
            a = F.elu(self.mid(a))
            out = self.out(a)
        return out.to(z.dtype).unflatten(-1, (self.outputs, self.latent_dim))


class IAFTransform(FlowTransform):
    """z' = sigma * z + (1 - sigma) * m, with [m, s] = MADE(z, h), sigma = sigmoid(s).

    log|det J| = sum_i log sigma_i (the Jacobian is triangular in the MADE's order).
    """

    def __init__(self, made: MADE, context: Tensor) -> None:
        super().__init__()
        self.made, self.context = made, context

    def _gate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m, s = self.made(x, self.context).unbind(-2)
        return m, s

    def forward_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m, s = self._gate(x)
        sigma = torch.sigmoid(s)
        return sigma * x + (1 - sigma) * m, F.logsigmoid(s).sum(-1)

    def inverse_and_log_det(self, y: Tensor) -> tuple[Tensor, Tensor]:
        # After pass k the first k coordinates (in the MADE's order) are exact, so D
        # passes invert exactly and autograd through them gives exact gradients. The
        # gate of the last pass reads only the first D - 1 coordinates: it is exact too.
        x = y
        for _ in range(y.shape[-1]):
            m, s = self._gate(x)
            sigma = torch.sigmoid(s)
            x = (y - (1 - sigma) * m) / sigma
        return x, F.logsigmoid(s).sum(-1)


class NetworkFlowFamily(FlowFamily):
    """A flow family whose steps are small networks of width ``flow_hidden`` (IAF, Real NVP)."""

    #: Narrower networks keep the contract tests' 360,000-point quadrature fast on
    #: small CPUs; the mathematics checked there is the same at every width.
    contract_options = {"flow_hidden": 32}

    def __init__(
        self, feature_dim: int, latent_dim: int, flow_steps: int, flow_hidden: int
    ) -> None:
        super().__init__(feature_dim, latent_dim, flow_steps)
        self.flow_hidden = check_positive("flow_hidden", flow_hidden)


@FAMILIES.register(
    "iaf",
    "diagonal Gaussian followed by K inverse autoregressive flow steps (MADE with context h)",
    "Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling 2016, "
    "Improved Variational Inference with Inverse Autoregressive Flow",
)
class InverseAutoregressiveFlow(NetworkFlowFamily):
    """K IAF steps, each a MADE over z with h as context; order reversed between steps.

    Options: ``flow_steps`` (K, default 4); ``flow_hidden``, the width of the MADE's
    two hidden layers (default 128).

    >>> fam = InverseAutoregressiveFlow(400, 20, flow_steps=2)
    >>> q = fam(torch.randn(3, 400))
    >>> z = q.rsample()
    >>> q.log_prob(z).shape        # scoring its own sample: no inverse needed
    torch.Size([3])
    """

    def __init__(
        self, feature_dim: int, latent_dim: int, *, flow_steps: int = 4, flow_hidden: int = 128
    ) -> None:
        super().__init__(feature_dim, latent_dim, flow_steps, flow_hidden)
        forward = torch.arange(latent_dim)
        self.steps = nn.ModuleList(
            MADE(latent_dim, feature_dim, self.flow_hidden,
                 forward if k % 2 == 0 else forward.flip(0))
            for k in range(self.flow_steps)
        )
        with torch.no_grad():
            for made in self.steps:
                made.out.bias[latent_dim:] += GATE_BIAS

    def transforms(self, h: Tensor) -> list[IAFTransform]:
        return [IAFTransform(made, made.context(h)) for made in self.steps]


class CouplingNet(nn.Module):
    """Shift and log-scale of the free coordinates from the kept ones and h.

    ``mask`` (D,) is 1 on the kept (conditioning) coordinates. Returns ``(shift,
    log_scale)``, each (..., B, D) and zero on the kept coordinates; the log-scale
    is ``scale * tanh(raw)`` with a learned per-coordinate ``scale``.
    """

    def __init__(self, latent_dim: int, feature_dim: int, hidden: int, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask, persistent=False)
        self.inp = nn.Linear(latent_dim, hidden)
        self.ctx = nn.Linear(feature_dim, hidden, bias=False)
        self.mid = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 2 * latent_dim)
        self.scale = nn.Parameter(torch.ones(latent_dim))

    def forward(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        with network_precision(z.device.type):  # as the MADE's
            a = F.relu(self.inp(z * self.mask) + context)
            a = F.relu(self.mid(a))
            out = self.out(a)
        shift, raw = out.to(z.dtype).chunk(2, -1)
        free = 1 - self.mask
        return shift * free, self.scale * torch.tanh(raw) * free


class CouplingTransform(FlowTransform):
    """z' = z * exp(s) + t on the free coordinates, s, t = CouplingNet(z_kept, h)."""

    def __init__(self, net: CouplingNet, context: Tensor) -> None:
        super().__init__()
        self.net, self.context = net, context

    def forward_and_log_det(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self.net(x, self.context)
        return x * torch.exp(log_scale) + shift, log_scale.sum(-1)

    def inverse_and_log_det(self, y: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self.net(y, self.context)  # the kept coordinates are unchanged
        return (y - shift) * torch.exp(-log_scale), log_scale.sum(-1)


@FAMILIES.register(
    "realnvp",
    "diagonal Gaussian followed by K affine coupling layers (Real NVP) with context h",
    "Dinh, Sohl-Dickstein & Bengio 2017, Density estimation using Real NVP",
)
class RealNVPFlow(NetworkFlowFamily):
    """K affine coupling steps with alternating (even/odd coordinate) masks and h as context.

    Options: ``flow_steps`` (K, default 4); ``flow_hidden``, the width of each
    coupling network's two hidden layers (default 128). With D = 1 every step
    rescales and shifts the single coordinate as a function of h only.

    >>> fam = RealNVPFlow(400, 20)
    >>> q = fam(torch.randn(3, 400))
    >>> q.log_prob(q.rsample((2, 4))).shape
    torch.Size([2, 4, 3])
    """

    def __init__(
        self, feature_dim: int, latent_dim: int, *, flow_steps: int = 4, flow_hidden: int = 128
    ) -> None:
        super().__init__(feature_dim, latent_dim, flow_steps, flow_hidden)
        index = torch.arange(latent_dim)
        masks = [
            ((index + k) % 2 == 0).float() if latent_dim > 1 else torch.zeros(1)
            for k in range(self.flow_steps)
        ]
        self.steps = nn.ModuleList(
            CouplingNet(latent_dim, feature_dim, self.flow_hidden, mask) for mask in masks
        )

    def transforms(self, h: Tensor) -> list[CouplingTransform]:
        with network_precision(h.device.type):
            return [CouplingTransform(net, net.ctx(h)) for net in self.steps]
