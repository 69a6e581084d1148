"""The model's own prior: today's behaviour, and the default sampler."""

from __future__ import annotations

from torch import Tensor

from varfam.samplers.base import SAMPLERS, Sampler

__all__ = ["PriorSampler"]


@SAMPLERS.register(
    "prior",
    "the model's own prior p(z) (p(z|y) with labels): the default, serves every family",
    "Kingma & Welling 2014, Auto-Encoding Variational Bayes",
)
class PriorSampler(Sampler):
    """z ~ p(z), or p(z|y) for a model conditioned on labels; nothing to fit or save.

    Shapes: ``sample(n)`` → (n, D) on the model's device.

    >>> import varfam
    >>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=3, hidden=(16,))
    >>> PriorSampler().fit(model).sample(4).shape
    torch.Size([4, 3])
    """

    name = "prior"

    needs_fit = False

    def __init__(self) -> None:
        super().__init__()

    def draw(self, n: int, y: Tensor | None) -> Tensor:
        model = self._model
        if model is None:  # pragma: no cover - sample() checks latent_dim first
            raise RuntimeError("PriorSampler.fit(model) binds the model")
        p = model.prior_distribution(y)
        return p.sample() if y is not None and p.batch_shape == (n,) else p.sample((n,))

    def describe(self) -> str:
        cfg = self._model.config if self._model is not None else None
        return f"prior ({cfg.prior})" if cfg is not None else "prior"
