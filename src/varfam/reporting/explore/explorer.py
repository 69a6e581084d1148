"""What the latent explorer computes: the map, decodes, interpolations and prior samples.

:class:`Explorer` holds a trained model and the test set it was measured on and
answers the page's questions with plain JSON-ready dictionaries (the HTTP layer in
:mod:`varfam.reporting.explore.server` only parses and forwards):

- the 2-D map of the test set's latent means (:func:`varfam.reporting.pictures.pca_2d` of
  :func:`varfam.reporting.pictures.latent_map`: the two principal axes when D > 2, the latent axes
  themselves when D <= 2), with labels;
- decoding a latent code ``z`` (D,) or a point ``(u, v)`` of the map, lifted back
  to the full latent space through the PCA, ``z = mean + (u, v) @ axes.T``, then
  projected onto the family's support (:func:`varfam.reporting.pictures.to_latent_support`);
- one slider per latent dimension, ordered by the test set's mean KL per dimension
  where q and p factorize (:func:`varfam.evaluation.bounds.kl_per_dimension_mean`), else by
  the variance of the latent means;
- the interpolation strip between two test examples
  (:func:`varfam.reporting.pictures.interpolation_grid`), and draws from the prior or
  from a sampler fitted after training (the page's sampler picker: ``prior`` and the
  samplers kept in ``RUN/samplers/``, :mod:`varfam.samplers`);
- for a model conditioned on labels, the class every code is decoded with (the
  page's class picker): test examples are encoded with their own labels, a decode
  or a prior draw uses the class asked for (``label``, an index or a name; by default
  the first test example's).

Images travel as 8-bit RGBA, base64-encoded, ready for a canvas ``ImageData``:
grey data (one channel) is drawn grey, three channels as RGB, any other number of
channels as grey tiles side by side. Pixel values are ``floor(255 * clamp(mean, 0,
1) + 0.5)`` of the likelihood's mean, the same rounding as
:func:`varfam.reporting.pictures.image_grid`.

>>> import torch, varfam
>>> from varfam.reporting.explore import Explorer
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=3, hidden=(16,)).eval()
>>> ex = Explorer(model, torch.rand(20, 1, 8, 8), torch.arange(20) % 4)
>>> out = ex.decode(point=[0.5, -0.5])
>>> len(out["z"]), out["image"]["width"], out["image"]["height"]
(3, 8, 8)
"""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from varfam.errors import VarfamError
from varfam.reporting.pictures import (
    as_images,
    interpolation_grid,
    latent_map,
    pca_2d,
    to_latent_support,
)

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE
    from varfam.samplers.base import Sampler

__all__ = ["Explorer", "image_payload", "rgba_pixels"]

#: Most images an interpolation strip may hold.
MAX_STEPS = 64
#: Prior draws used to set the range of the sliders of real-valued latents.
RANGE_DRAWS = 1000


def rgba_pixels(images: Tensor) -> np.ndarray:
    """Images (N, *data_shape) → 8-bit RGBA (N, H, W', 4); W' = W × channels unless RGB."""
    img = as_images(images.detach().float().cpu()).clamp(0, 1)
    n, c, h, w = img.shape
    q = torch.floor(img * 255 + 0.5).to(torch.uint8).numpy()  # (N, C, H, W)
    if c == 3:
        rgb = q.transpose(0, 2, 3, 1)
    else:  # grey, or each channel as a grey tile, left to right
        grey = q.transpose(0, 2, 1, 3).reshape(n, h, c * w)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
    alpha = np.full(rgb.shape[:-1] + (1,), 255, np.uint8)
    return np.concatenate([rgb, alpha], -1)


def image_payload(images: Tensor) -> list[dict[str, Any]]:
    """Images (N, *data_shape) → N dicts ``{width, height, rgba}`` (``rgba``: base64 bytes)."""
    pixels = rgba_pixels(images)
    return [
        {
            "width": int(p.shape[1]),
            "height": int(p.shape[0]),
            "rgba": base64.b64encode(np.ascontiguousarray(p).tobytes()).decode("ascii"),
        }
        for p in pixels
    ]


def _floats(values: Any, name: str, length: int) -> Tensor:
    """A JSON list of ``length`` finite numbers → float32 tensor, or a VarfamError."""
    if not isinstance(values, list | tuple) or len(values) != length:
        raise VarfamError(f"{name} must be a list of {length} numbers")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise VarfamError(f"{name} must be a list of {length} numbers")
    out = torch.tensor([float(v) for v in values], dtype=torch.float32)
    if not bool(torch.isfinite(out).all()):
        raise VarfamError(f"{name} must hold finite numbers")
    return out


def _index(value: Any, name: str, n: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
        raise VarfamError(f"{name} must be a test example index in 0..{n - 1}")
    return value


class Explorer:
    """A trained model and its test set, answering the explorer page's requests.

    ``x``: test inputs (N, *data_shape); ``labels``: (N,) integers or ``None``;
    ``classes``: the name of each label value, where known; ``samplers``: fitted
    samplers by name, which a draw may use instead of the prior. All requests are
    serialized by a lock (the server answers from several threads).
    """

    def __init__(
        self,
        model: VAE,
        x: Tensor,
        labels: Tensor | None = None,
        *,
        classes: tuple[str, ...] | None = None,
        name: str = "run",
        seed: int = 0,
        samplers: dict[str, Sampler] | None = None,
    ) -> None:
        if x.shape[0] < 1:
            raise VarfamError("the explorer needs at least one test example")
        model.check_data(x, "the test data")
        self.model = model.eval()
        self.x = x
        self.labels = labels
        self.classes = model.condition.names if model.uses_labels else classes
        self.name = name
        self.seed = seed
        #: what a draw takes z from: the prior (None), or a fitted sampler
        self.samplers: dict[str, Sampler | None] = {"prior": None, **(samplers or {})}
        self.support = getattr(model.family, "latent_support", "real")
        self._lock = threading.Lock()
        self._draws = 0
        #: what a model conditioned on labels reads: the test labels (or q(y|x)'s guess)
        self.condition = model.labels_of(x, labels) if model.uses_labels else None
        #: the class a decode or a prior draw uses when the request names none
        self.default_label = None if self.condition is None else int(self.condition[0])
        self.locations = latent_map(model, x, y=self.condition)  # (N, D)
        self.coords, self.mean, self.axes = pca_2d(self.locations)  # (N, 2), (D,), (D, 2)
        self.kl, self.variance = self._dimension_scores()
        key = self.kl if self.kl is not None else self.variance
        self.order = sorted(range(self.latent_dim), key=lambda d: (-float(key[d]), d))
        self.ranges = self._slider_ranges()

    # ---------------------------------------------------------------- set-up
    @classmethod
    def from_run(cls, run: str | Path, limit: int | None = None) -> Explorer:
        """Open a run folder (a :class:`VarfamError` if it is not one), its test data and
        the samplers fitted in ``RUN/samplers/`` (those fitted on other weights left out)."""
        from varfam.reporting.sampling import fitted_samplers
        from varfam.runs.folder import open_run, run_dataset, run_test_data

        model, cfg = open_run(run)
        samplers, _ = fitted_samplers(run, model)
        x, labels = run_test_data(cfg)
        classes = run_dataset(cfg).classes
        if limit is not None:
            x = x[:limit]
            labels = None if labels is None else labels[:limit]
        return cls(model, x, labels, classes=classes, name=str(run), seed=cfg.train.seed,
                   samplers=samplers)

    @property
    def latent_dim(self) -> int:
        return int(self.model.latent_dim)

    def _dimension_scores(self) -> tuple[Tensor | None, Tensor]:
        from varfam.evaluation.bounds import kl_per_dimension_mean

        try:
            kl = kl_per_dimension_mean(self.model, self.x, y=self.condition)
        except (NotImplementedError, RuntimeError, ValueError):
            kl = None
        if kl is not None and not bool(torch.isfinite(kl).all()):
            kl = None
        variance = self.locations.double().var(0, unbiased=False).float()
        return kl, variance

    def _slider_ranges(self) -> Tensor:
        """(D, 2) low and high end of each dimension's slider."""
        d = self.latent_dim
        if self.support == "sphere":
            return torch.tensor([[-1.0, 1.0]]).expand(d, 2).clone()
        if self.support in ("unit-cube", "simplex"):
            return torch.tensor([[0.0, 1.0]]).expand(d, 2).clone()
        values = [self.locations]
        try:
            with torch.no_grad(), self.model.evaluating(self.seed):
                draws = self.model.prior_distribution().sample((RANGE_DRAWS,))
            values.append(draws.float().cpu().reshape(-1, d))
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        z = torch.cat(values)
        z = z[torch.isfinite(z).all(1)]
        if z.shape[0] == 0:
            return torch.tensor([[-3.0, 3.0]]).expand(d, 2).clone()
        lo, hi = torch.quantile(z, 0.005, dim=0), torch.quantile(z, 0.995, dim=0)
        pad = 0.1 * (hi - lo) + 0.05
        return torch.stack([lo - pad, hi + pad], 1)

    # ---------------------------------------------------------------- answers
    def info(self) -> dict[str, Any]:
        """What the page needs to lay itself out: sizes, parts, slider order and ranges."""
        cfg = self.model.config
        image = rgba_pixels(self.x[:1])[0]
        dims = [
            {
                "index": d,
                "kl": None if self.kl is None else float(self.kl[d]),
                "variance": float(self.variance[d]),
                "low": float(self.ranges[d, 0]),
                "high": float(self.ranges[d, 1]),
            }
            for d in self.order
        ]
        return {
            "run": self.name,
            "family": getattr(cfg, "family", type(self.model.family).__name__),
            "prior": getattr(cfg, "prior", type(self.model.prior).__name__),
            "likelihood": getattr(cfg, "likelihood", type(self.model.likelihood).__name__),
            "latent_dim": self.latent_dim,
            "latent_support": self.support,
            "data_shape": list(self.model.data_shape),
            "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
            "n_test": int(self.x.shape[0]),
            "order_by": "kl" if self.kl is not None else "variance",
            "dims": dims,
            "start": self.locations[0].tolist(),
            "condition": None if self.condition is None else {
                "classes": list(self.classes), "label": self.default_label,
            },
            "samplers": list(self.samplers),
        }

    def map(self) -> dict[str, Any]:
        """The test set's latent means in map coordinates, with labels and the lift-back."""
        labels = None if self.labels is None else [int(v) for v in self.labels.tolist()]
        values = sorted(set(labels)) if labels is not None else []
        names = {
            v: (self.classes[v] if self.classes and 0 <= v < len(self.classes) else str(v))
            for v in values
        }
        two_d = self.latent_dim <= 2
        return {
            "coords": self.coords.tolist(),
            "labels": labels,
            "classes": [{"value": v, "name": names[v]} for v in values],
            "mean": self.mean.tolist(),
            "axes": self.axes.tolist(),
            "axis_names": ["z1", "z2"] if two_d else ["principal axis 1", "principal axis 2"],
        }

    def lift(self, point: Tensor) -> Tensor:
        """A map point (2,) → latent code (D,) on the map's plane: ``mean + point @ axes.T``."""
        return self.mean + point @ self.axes.T

    def project(self, z: Tensor) -> Tensor:
        """A latent code (D,) → its map point (2,): ``(z - mean) @ axes``."""
        return (z - self.mean) @ self.axes

    def _label(self, label: Any) -> int | None:
        """The class a request decodes with: ``label`` (an index or a class name) or the
        default; ``None`` for a model without labels (where ``label`` must be absent)."""
        if self.condition is None:
            if label is not None:
                raise VarfamError("this run is not conditioned on labels; leave label out")
            return None
        if label is None:
            return self.default_label
        if not isinstance(label, int | str):
            raise VarfamError("label must be a class index or a class name")
        return self.model.condition.index(label)

    @torch.no_grad()
    def _decode(self, z: Tensor, label: int | None = None) -> Tensor:
        """Decoded means of codes (N, D) (with class ``label``) → (N, *data_shape) on the CPU."""
        return self.model.decode(z.to(self.model.device), label).mean.float().cpu()

    def _code_answer(self, z: Tensor, label: int | None = None, **extra: Any) -> dict[str, Any]:
        with self._lock:
            image = self._decode(z[None], label)
        return {
            "z": z.tolist(),
            "point": self.project(z).tolist(),
            "image": image_payload(image)[0],
            "label": label,
            **extra,
        }

    def decode(self, z: Any = None, point: Any = None, label: Any = None) -> dict[str, Any]:
        """Decode a code ``z`` (D numbers) or a map ``point`` (2 numbers).

        The code is projected onto the family's support first; the answer's ``z`` is
        the code that was decoded, ``point`` its place on the map. ``label``: the class
        to decode with, for a model conditioned on labels (the answer's ``label``).
        """
        if (z is None) == (point is None):
            raise VarfamError("give either z (a latent code) or point (a map position)")
        if z is not None:
            code = _floats(z, "z", self.latent_dim)
        else:
            code = self.lift(_floats(point, "point", 2))
        return self._code_answer(to_latent_support(code, self.support), self._label(label))

    def sample(self, seed: Any = None, label: Any = None, sampler: Any = None) -> dict[str, Any]:
        """One draw ``z ~ p(z)`` (``p(z|y)`` with class ``label`` for a model conditioned on
        labels), or from the fitted ``sampler`` named (default ``prior``), seeded (the seed
        is returned), and its decoded image. A fitted sampler's z serves every class: the
        class only changes the decoding."""
        if seed is None:
            with self._lock:
                seed, self._draws = self.seed * 1_000_003 + self._draws, self._draws + 1
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise VarfamError("seed must be a non-negative integer")
        name = "prior" if sampler is None else sampler
        if name not in self.samplers:
            raise VarfamError(f"sampler must be one of {', '.join(self.samplers)}; fit another "
                              "with varfam sample RUN --sampler NAME")
        y = self._label(label)
        with self._lock, torch.no_grad(), self.model.evaluating(seed):
            fitted = self.samplers[name]
            if fitted is None:
                p = self.model.prior_distribution(None if y is None else [y])
                z = p.sample().float().cpu().reshape(-1)
            else:
                labels = None if y is None else torch.tensor([y], device=self.model.device)
                z = fitted.sample(1, labels).float().cpu().reshape(-1)
        return self._code_answer(z, y, seed=seed, sampler=name)

    def example(self, index: Any) -> dict[str, Any]:
        """Test example ``index``: its image, label, latent mean and the decode of that mean
        (with the example's own label, for a model conditioned on labels)."""
        i = _index(index, "index", self.x.shape[0])
        own = None if self.condition is None else int(self.condition[i])
        answer = self._code_answer(self.locations[i].clone(), own)
        answer["input"] = image_payload(self.x[i : i + 1])[0]
        answer["index"] = i
        answer["true_label"] = None if self.labels is None else int(self.labels[i])
        if own is None:
            answer["label"] = answer["true_label"]
        return answer

    def interpolate(self, a: Any, b: Any, steps: Any = 10) -> dict[str, Any]:
        """Decoded straight line (great circle on the sphere) from test example ``a`` to ``b``."""
        n = self.x.shape[0]
        i, j = _index(a, "a", n), _index(b, "b", n)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= MAX_STEPS:
            raise VarfamError(f"steps must be an integer in 2..{MAX_STEPS}")
        pair = self.x[[i, j]]
        y = None if self.condition is None else self.condition[[i, j]]
        with self._lock:
            images = interpolation_grid(self.model, pair, steps=steps, y=y).float().cpu()
        return {
            "a": i,
            "b": j,
            "steps": steps,
            "images": image_payload(images),
            "inputs": image_payload(pair),
        }

    def __repr__(self) -> str:
        return (
            f"Explorer({self.name!r}, latent_dim={self.latent_dim}, n_test={self.x.shape[0]}, "
            f"order_by={'kl' if self.kl is not None else 'variance'})"
        )
