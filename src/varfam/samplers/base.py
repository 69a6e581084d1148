"""The sampler contract: what draws z after training, and how a run folder keeps it.

A VAE's decoder turns latents into data; *which* latents it is given decides what
its samples look like. The textbook choice draws them from the prior p(z), but the
encoder seldom fills the prior: the aggregate posterior q(z) = E_x q(z|x) leaves
holes where N(0, I) still puts mass, and those draws decode into blur. A
:class:`Sampler` is a part fitted *after* training on the encoder's latents of the
training set, and then draws z of shape (n, D) for the decoder:

>>> import torch, varfam
>>> from varfam.samplers import SAMPLERS
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> sampler = SAMPLERS.build("gmm", options={"components": 2}).fit(model, torch.rand(50, 1, 8, 8))
>>> sampler.sample(5).shape, model.sample(5, sampler=sampler).shape
(torch.Size([5, 2]), torch.Size([5, 1, 8, 8]))

A fitted sampler is an ``nn.Module`` whose tensors are saved with safetensors and
whose settings and findings (options, what was chosen, the latent size, a
fingerprint of the model's weights) go to a small JSON file beside them; nothing is
pickled. In a run folder they are ``RUN/samplers/NAME.safetensors`` and
``RUN/samplers/NAME.json``, written by :func:`varfam.samplers.files.fitted_sampler`
on first use and read afterwards.

Fitted samplers model z in R^D: they serve families whose ``latent_support`` is
``"real"`` and refuse the others (the sphere of vMF, the simplex of Gumbel-softmax,
the unit cube of relaxed Bernoulli) in one line; the ``prior`` sampler serves every
family.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from varfam.errors import VarfamError
from varfam.registry import SAMPLERS, accepted_options

if TYPE_CHECKING:
    from varfam.model import VAE

__all__ = [
    "Sampler",
    "SAMPLERS",
    "FIT_ON",
    "encoder_latents",
    "model_fingerprint",
    "fit_by_adam",
    "check_serves",
]

#: Version of the JSON beside a saved sampler's tensors.
FORMAT = 1
#: What a fitted sampler is fitted on: the encoder's point summary of q(z|x) per
#: training example ("mean"), or one draw z ~ q(z|x) per example ("draw"), whose
#: distribution is the aggregate posterior itself.
FIT_ON = ("mean", "draw")


class Sampler(nn.Module):
    """Draws latents z (n, D) for a trained model's decoder.

    Subclasses set ``name`` (their registered name), take their options as
    keyword-only constructor arguments (kept as attributes of the same names, so
    :meth:`options` can record them), and implement:

    - ``fit_latents(z)``: fit on latents ``z`` (N, D) (float32, CPU); fill ``self.info``
      with what fitting found (JSON values);
    - ``build(latent_dim, info)``: make the modules of a fitted sampler with the shapes
      that ``info`` records (used by ``fit_latents`` and to load a saved one);
    - ``draw(n, y)``: ``n`` latents (n, D).

    ``fit(model, x)`` encodes ``x`` and calls ``fit_latents`` under the sampler's seed,
    leaving the caller's random state as it was.
    """

    name: ClassVar[str] = ""
    #: False for samplers that need no fitting (the prior): they serve any family.
    needs_fit: ClassVar[bool] = True

    def __init__(self, *, seed: int = 0, fit_on: str = "mean") -> None:
        super().__init__()
        if fit_on not in FIT_ON:
            raise VarfamError(
                f"sampler '{self.name}': fit_on must be one of {', '.join(FIT_ON)}, got {fit_on!r}"
            )
        self.seed = int(seed)
        self.fit_on = fit_on
        #: latent size D, known once fitted (or loaded)
        self.latent_dim: int | None = None
        #: what fitting found and how (JSON values): components chosen, scores, seconds
        self.info: dict[str, Any] = {}
        #: :func:`model_fingerprint` of the model it was fitted on
        self.fingerprint: str | None = None
        #: the model a sampler without fitting draws from (not a submodule: not saved)
        self._model: VAE | None = None
        #: whether :func:`~varfam.samplers.files.fitted_sampler` read it back from files
        self.loaded = False

    # ---------------------------------------------------------------- fitting
    def fit(self, model: VAE, x: Tensor | None = None, y: Tensor | None = None,
            *, batch_size: int = 1024) -> Sampler:
        """Fit on the latents of ``x`` (N, *data_shape) under ``model``; returns ``self``.

        ``y``: labels (N,) of ``x`` for a model conditioned on labels. The latents are
        the encoder's means, or one draw per example with ``fit_on="draw"``.
        """
        check_serves(self, model)
        self.bind(model)
        if not self.needs_fit:
            self.latent_dim = model.latent_dim
            return self
        if x is None or len(x) < 2:
            raise VarfamError(f"sampler '{self.name}' needs at least 2 examples to fit on")
        with model.evaluating(self.seed):
            z = encoder_latents(model, x, y, self.fit_on, batch_size)
            if not torch.isfinite(z).all():
                raise VarfamError(
                    f"sampler '{self.name}': the encoder gave non-finite latents; "
                    "check the run's weights and the data"
                )
            start = time.perf_counter()
            self.fit_latents(z)
        self.info["fit_seconds"] = round(time.perf_counter() - start, 3)
        self.info["examples"] = int(z.shape[0])
        self.fingerprint = model_fingerprint(model)
        return self

    def bind(self, model: VAE) -> None:
        """Keep ``model`` for drawing, outside the module tree (neither saved nor moved)."""
        object.__setattr__(self, "_model", model)

    def fit_latents(self, z: Tensor) -> None:  # pragma: no cover - abstract
        """Fit on latents ``z`` (N, D)."""
        raise NotImplementedError

    def build(self, latent_dim: int, info: dict[str, Any]) -> None:
        """Make the modules of a fitted sampler of latent size ``latent_dim``."""
        self.latent_dim = latent_dim

    # ---------------------------------------------------------------- drawing
    @torch.no_grad()
    def sample(self, n: int, y: Tensor | None = None) -> Tensor:
        """``n`` latents, shape (n, D), on the sampler's device.

        ``y``: int64 labels (n,) of a model conditioned on labels; the prior sampler
        draws from p(z|y), fitted samplers from the aggregate posterior over every class
        (the decoder reads y).
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise VarfamError(f"the number of samples must be a positive integer, got {n!r}")
        if self.latent_dim is None:
            raise VarfamError(
                f"sampler '{self.name}' is not fitted; call fit(model, x) or use fitted_sampler"
            )
        return self.draw(n, y)

    def draw(self, n: int, y: Tensor | None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---------------------------------------------------------------- describing
    def options(self) -> dict[str, Any]:
        """The sampler's options (its keyword-only constructor arguments) and their values."""
        return {name: _jsonable(getattr(self, name)) for name in accepted_options(type(self))}

    def describe(self) -> str:
        """One line: the sampler and what fitting chose (components, epochs, scores)."""
        return self.name

    def config(self) -> dict[str, Any]:
        """What the JSON beside the tensors holds."""
        return {
            "format": FORMAT,
            "sampler": self.name,
            "options": self.options(),
            "latent_dim": self.latent_dim,
            "model": self.fingerprint,
            "info": self.info,
            "description": self.describe(),
        }


# -------------------------------------------------------------------- helpers
def check_serves(sampler: Sampler, model: VAE) -> None:
    """Refuse, in one line, a fitted sampler for a family whose latents are not in R^D."""
    support = model.family.latent_support
    if sampler.needs_fit and support != "real":
        family = model.config.family if model.config is not None else type(model.family).__name__
        raise VarfamError(
            f"sampler '{sampler.name}' models latents in R^D, but family '{family}' has "
            f"latents on the {support}; use --sampler prior for this run"
        )


@torch.no_grad()
def encoder_latents(model: VAE, x: Tensor, y: Tensor | None = None, fit_on: str = "mean",
                    batch_size: int = 1024) -> Tensor:
    """The latents of ``x`` (N, *data_shape): encoder means or one draw each, (N, D) float32 CPU.

    ``y``: labels (N,) for a model conditioned on labels. The model runs in eval mode
    on its own device, ``batch_size`` examples at a time.
    """
    out = []
    with model.evaluating():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size].to(model.device)
            yb = None if y is None else y[start:start + batch_size].to(model.device)
            if fit_on == "mean":
                z = model.encode_location(xb, yb)
            else:
                z = model.encode(xb, yb).sample()
            out.append(z.float().cpu())
    return torch.cat(out)


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 (hex, 16 characters) of a model's weights: names, dtypes, shapes and bytes.

    A sampler records the fingerprint of the model it was fitted on, so one kept in a
    run folder whose model was trained again is not used by mistake.
    """
    digest = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def fit_by_adam(
    module: nn.Module,
    loss: Callable[[Tensor], Tensor],
    z: Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 256,
    held_out: float = 0.1,
) -> dict[str, Any]:
    """Train ``module`` on rows of ``z`` (N, D) by Adam on ``loss(batch)`` (a mean, nats).

    A seeded ``held_out`` share of the rows is kept aside; the weights of the epoch
    with the lowest held-out loss are the ones kept (a small data set overfits a
    flexible density quickly). Returns ``{"epochs", "best_epoch", "train_loss",
    "held_out_loss"}`` (losses in nats per example).
    """
    n = z.shape[0]
    order = torch.randperm(n)
    n_val = min(max(int(round(held_out * n)), 1), n - 1) if held_out > 0 else 0
    val, train = z[order[:n_val]], z[order[n_val:]]
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    best = (math.inf, 0, {k: v.clone() for k, v in module.state_dict().items()}, math.nan)
    for epoch in range(1, epochs + 1):
        module.train()
        total = 0.0
        for idx in torch.randperm(train.shape[0]).split(batch_size):
            value = loss(train[idx])
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total += float(value.detach()) * len(idx)
        module.eval()
        with torch.no_grad():
            score = float(loss(val)) if n_val else total / train.shape[0]
        if score < best[0]:
            state = {k: v.clone() for k, v in module.state_dict().items()}
            best = (score, epoch, state, total / train.shape[0])
    module.load_state_dict(best[2])
    module.eval()
    return {"epochs": epochs, "best_epoch": best[1], "train_loss": round(best[3], 4),
            "held_out_loss": round(best[0], 4)}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
