"""Pictures: reconstructions, prior samples, interpolations, the latent map.

The image grids themselves (tiling, scaling, labelled rows) are in
:mod:`~varfam.reporting.grids` and re-exported here; the latent map uses matplotlib.
Images are (N, C, H, W) or (N, D) tensors in [0, 1].
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torch import Tensor

from varfam.reporting.grids import as_images, image_grid, label_rows, save_grid, scaled_grid

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from varfam.model import VAE

__all__ = [
    "as_images",
    "image_grid",
    "save_grid",
    "reconstruction_grid",
    "sample_grid",
    "interpolation_grid",
    "latent_map",
    "pca_2d",
    "latent_map_figure",
    "save_latent_map",
    "Picture",
    "PICTURE_FILES",
    "run_pictures",
    "write_pictures",
    "write_run_pictures",
    "to_latent_support",
    "traversal_grid",
    "manifold_grid",
    "class_grid",
    "label_rows",
    "save_class_grid",
]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@torch.no_grad()
def reconstruction_grid(
    model: VAE, x: Tensor, draws: int = 1, y: Tensor | None = None
) -> tuple[Tensor, int]:
    """Rows of [input, reconstruction × draws]; returns (images, images per row).

    ``y``: the labels of ``x`` for a model conditioned on labels.
    """
    rec = model.reconstruct(x.to(model.device), draws=draws,
                            y=None if y is None else y.to(model.device))
    rec = rec.unsqueeze(0) if draws == 1 else rec
    rows = torch.cat([x.to(model.device).unsqueeze(0), rec], 0)  # (1+draws, B, ...)
    return rows.transpose(0, 1).reshape(-1, *x.shape[1:]), draws + 1


@torch.no_grad()
def sample_grid(model: VAE, n: int = 64) -> Tensor:
    return model.sample(n)


@torch.no_grad()
def class_grid(model: VAE, per_class: int = 8, sampler: Any = None) -> Tensor:
    """Class-conditional samples of a model conditioned on labels: one row of ``per_class``
    draws x ~ p(x|z, y), z ~ p(z|y) per class y, shape (C * per_class, *data_shape).
    ``sampler``: z from a fitted sampler instead (:meth:`VAE.sample`)."""
    c = model.condition.n_classes
    y = torch.arange(c, device=model.device).repeat_interleave(per_class)
    return model.sample(c * per_class, y, sampler=sampler)


def save_class_grid(model: VAE, path: str | Path, per_class: int = 8,
                    sampler: Any = None) -> Path:
    """Write :func:`class_grid` as a PNG, each row labelled with its class name."""
    images = class_grid(model, per_class, sampler)
    names = list(model.condition.names)
    grid = label_rows(scaled_grid(images, per_class), names, len(names))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


@torch.no_grad()
def interpolation_grid(
    model: VAE, pairs: Tensor, steps: int = 10, y: Tensor | None = None
) -> Tensor:
    """Decode straight lines between the latent locations of pairs of inputs.

    ``pairs``: (2P, *data_shape), consecutive items form a pair (an odd last item is
    left out). Returns (P * steps, *data_shape), one row per pair. Spherical families
    are interpolated along the great circle (spherical linear interpolation). In a
    model conditioned on labels, ``y`` holds the pairs' labels: each end is encoded with
    its own, and the one-hot label moves linearly from one end's to the other's along
    the path (the decoder reads it as a probability vector).
    """
    if pairs.shape[0] < 2:
        raise ValueError(f"interpolation needs at least two inputs, got {pairs.shape[0]}")
    pairs = pairs[: pairs.shape[0] - pairs.shape[0] % 2].to(model.device)
    labels = model.labels_of(pairs, None if y is None else y[: pairs.shape[0]].to(model.device))
    z = model.encode_location(pairs) if labels is None else model.encode_location(pairs, labels)
    a, b = z[0::2], z[1::2]
    t = torch.linspace(0, 1, steps, device=z.device).view(1, -1, 1)
    soft = None
    if labels is not None:  # the label's one-hot code along the same path
        code = model.condition.one_hot(labels, z)
        soft = code[0::2, None] + t * (code[1::2] - code[0::2])[:, None]
        soft = soft.reshape(-1, code.shape[-1])
    if getattr(model.family, "default_prior", "") == "uniform-sphere":
        a, b = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)
        omega = torch.acos((a * b).sum(-1).clamp(-1 + 1e-6, 1 - 1e-6)).view(-1, 1, 1)
        path = (torch.sin((1 - t) * omega) * a[:, None] + torch.sin(t * omega) * b[:, None]) / (
            torch.sin(omega)
        )
    else:
        path = a[:, None] + t * (b - a)[:, None]
    return _decoded(model, path.reshape(-1, z.shape[-1]), soft)


def _decoded(model: VAE, z: Tensor, y: Tensor | int | None) -> Tensor:
    """Decoded means of ``z`` (N, D), with labels ``y`` only for a model that reads them."""
    return (model.decode(z) if y is None else model.decode(z, y)).mean


def pca_2d(z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Project (N, D) to its two principal axes: (coords (N, 2), mean (D,), axes (D, 2)).

    For D <= 2 the axes are the coordinate axes themselves (D = 1 pads a zero axis).
    With fewer than two examples beyond the first (N <= 2) there are fewer than two
    principal axes; the missing one is a zero axis, so coords are always (N, 2).
    """
    z = z.double()
    mean = z.mean(0)
    d = z.shape[1]
    if d <= 2:
        axes = torch.eye(d, 2, dtype=z.dtype)
    else:
        _, _, v = torch.linalg.svd(z - mean, full_matrices=False)
        axes = torch.zeros(d, 2, dtype=z.dtype)
        k = min(2, v.shape[0])
        axes[:, :k] = v[:k].T
    if d <= 2:
        mean = torch.zeros_like(mean)
    return ((z - mean) @ axes).float(), mean.float(), axes.float()


@torch.no_grad()
def latent_map(
    model: VAE, x: Tensor, batch_size: int = 1000, y: Tensor | None = None
) -> Tensor:
    """Latent locations (N, D) of ``x``, batched; ``y``: the labels of a model conditioned
    on labels."""
    out = [
        model.encode_location(
            x[i : i + batch_size].to(model.device),
            None if y is None else y[i : i + batch_size].to(model.device),
        ).float().cpu()
        for i in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(out)


def latent_map_figure(model: VAE, x: Tensor, labels: Tensor | None) -> Figure:
    """Scatter plot of the test set's latent means in 2-D (PCA when D > 2), coloured by label.

    A model conditioned on labels encodes each example with its label.
    """
    plt = _pyplot()
    coords, _, _ = pca_2d(latent_map(model, x, y=labels if model.uses_labels else None))
    fig, ax = plt.subplots(figsize=(6, 5.4), dpi=100)
    if labels is not None:
        sc = ax.scatter(coords[:, 0], coords[:, 1], c=labels.cpu(), cmap="tab10", s=6, alpha=0.8)
        ax.legend(*sc.legend_elements(), title="label", loc="best", fontsize=7)
    else:
        ax.scatter(coords[:, 0], coords[:, 1], s=6, alpha=0.8)
    two_d = model.latent_dim <= 2
    ax.set_xlabel("z1" if two_d else "principal axis 1")
    ax.set_ylabel("z2" if two_d else "principal axis 2")
    n = x.shape[0]
    ax.set_title(f"latent means of {n} test example{'s' if n != 1 else ''}")
    fig.tight_layout()
    return fig


def save_latent_map(
    model: VAE, x: Tensor, labels: Tensor | None, path: str | Path
) -> Path:
    """Write :func:`latent_map_figure` as a PNG."""
    path = Path(path)
    path.write_bytes(Picture("latent-map", "", "", "", latent_map_figure(model, x, labels)).png())
    return path


# ---------------------------------------------------------------- a run's pictures
#: The file of each picture a run folder holds (the others are on report.html only).
PICTURE_FILES = {
    "reconstructions": "reconstructions.png", "samples": "samples.png",
    "interpolations": "interpolation.png", "latent-map": "latent.png",
    "marginals": "marginals.png", "correlations": "correlations.png",
}


@dataclass
class Picture:
    """One picture of a run, whoever shows it (the run folder, report.html, a tracker).

    ``key`` names it (the page's section id; :data:`PICTURE_FILES` its file), ``title``
    and ``alt`` are a heading and a short name, ``note`` says in plain text what it
    shows. ``image`` is a PIL image or a matplotlib figure (saved at ``dpi``), or
    ``None`` where the data cannot give it (the note says why).
    """

    key: str
    title: str
    alt: str
    note: str
    image: Image.Image | Figure | None
    dpi: float | None = None
    _png: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def file(self) -> str | None:
        """The file name in the run folder, or ``None`` for a picture of the page only."""
        return PICTURE_FILES.get(self.key)

    def png(self) -> bytes:
        """The image as PNG bytes (a figure is rendered once, then closed)."""
        if self._png is None and self.image is not None:
            buf = io.BytesIO()
            if isinstance(self.image, Image.Image):
                self.image.save(buf, format="PNG")
            else:
                self.image.savefig(buf, format="png", dpi=self.dpi)
                _pyplot().close(self.image)
            self._png = buf.getvalue()
        return self._png or b""


@torch.no_grad()
def run_pictures(
    model: VAE, x: Tensor, labels: Tensor | None = None, *, seed: int = 0,
    metrics: dict[str, Any] | None = None, keys: Iterable[str] | None = None,
) -> list[Picture]:
    """The pictures of an image run on test examples ``x`` (N, *data_shape): reconstructions,
    samples, interpolations, latent traversals, the latent map and, for 2-D latents, the
    decoded manifold (only those in ``keys``, when given).

    Drawn in eval mode with torch's random state forked and seeded by ``seed``. A model
    conditioned on labels reads the test ``labels`` (N,), draws one row of samples per
    class, and decodes its traversals and manifold as the first example's class.
    ``metrics``: :func:`varfam.evaluation.bounds.evaluate`'s results on ``x``, whose KL
    per dimension (or variance of the latent means) orders the traversals.
    """
    wanted = set(PICTURE_FILES) | {"traversals", "manifold"} if keys is None else set(keys)
    y = labels if model.uses_labels else None  # what a model conditioned on labels reads
    out = []
    with model.evaluating(seed):
        if "reconstructions" in wanted:
            out.append(_reconstructions(model, x, y))
        if "samples" in wanted:
            out.append(_samples(model))
        if "interpolations" in wanted:
            out.append(_interpolations(model, x, y))
        if "traversals" in wanted:
            out.append(_traversals(model, x, y, metrics))
        if "latent-map" in wanted:
            out.append(_latent_map(model, x, labels))
        if "manifold" in wanted and model.latent_dim == 2:
            out.append(_manifold(model, x, y))
    return out


def write_pictures(pictures: Iterable[Picture], run_dir: str | Path) -> dict[str, Path]:
    """Write the pictures that have a file (:data:`PICTURE_FILES`) into ``run_dir``:
    {file stem: path}."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for picture in pictures:
        if picture.file is not None and picture.image is not None:
            path = run_dir / picture.file
            path.write_bytes(picture.png())
            out[path.stem] = path
    return out


def write_run_pictures(
    model: VAE, test: Tensor, labels: Tensor | None, run_dir: str | Path, seed: int = 0
) -> dict[str, Path]:
    """Write reconstructions.png, samples.png, interpolation.png and latent.png into ``run_dir``.

    Any number of test examples works: interpolation.png needs two and is left out
    with one. A model conditioned on labels reads the test ``labels``, and its
    samples.png holds one row of class-conditional samples per class, named.
    """
    return write_pictures(run_pictures(model, test, labels, seed=seed, keys=PICTURE_FILES),
                          run_dir)


def _reconstructions(model: VAE, x: Tensor, y: Tensor | None) -> Picture:
    rec, per_row = reconstruction_grid(model, x[:16], draws=1, y=None if y is None else y[:16])
    how = ("of one z ~ q(z|x, y), decoded with the input's label y." if model.uses_labels
           else "of one z ~ q(z|x).")
    return Picture("reconstructions", "Reconstructions", "reconstructions",
                   f"Pairs: test input, then the decoded mean {how}", scaled_grid(rec, 4 * per_row))


def _samples(model: VAE) -> Picture:
    if not model.uses_labels:
        return Picture("samples", "Prior samples", "samples",
                       "Decoded means of 64 draws z ~ p(z).",
                       scaled_grid(sample_grid(model, 64), 8))
    names = list(model.condition.names)
    image = label_rows(scaled_grid(class_grid(model, 8), 8), names, len(names))
    return Picture("samples", "Samples per class", "samples per class",
                   "One row per class, named on the left: decoded means of 8 draws "
                   "z ~ p(z|y) with that class y.", image)


def _interpolations(model: VAE, x: Tensor, y: Tensor | None) -> Picture:
    pairs = min(4, x.shape[0] // 2)
    if not pairs:
        return Picture("interpolations", "Interpolations", "interpolations",
                       "Needs at least two test examples.", None)
    path = interpolation_grid(model, x[: 2 * pairs], steps=10,
                              y=None if y is None else y[: 2 * pairs])
    return Picture("interpolations", "Interpolations", "interpolations",
                   "Each row decodes the straight line (the great circle on the sphere) "
                   "between the latent means of two test inputs.", scaled_grid(path, 10))


def _class_of_first(model: VAE, x: Tensor, y: Tensor | None) -> tuple[int | None, str]:
    """The class a model conditioned on labels decodes traversals and the manifold with
    (the first test example's), and the words that say so; (None, "") for other models."""
    if not model.uses_labels:
        return None, ""
    label = int(model.labels_of(x[:1].to(model.device), None if y is None else y[:1])[0])
    return label, f", decoded as class {model.condition.names[label]}"


def _traversal_base(model: VAE, x: Tensor, label: int | None) -> tuple[Tensor, str]:
    """Where the traversals start: the prior's mean where it has one, else the latent
    mean of the first test example; and the words that say which."""
    support = getattr(model.family, "latent_support", "real")
    if support == "real":
        try:
            mean = model.prior_distribution(None if label is None else [label]).mean
            mean = mean.float().reshape(-1)
            if bool(torch.isfinite(mean).all()):
                return mean, "the prior's mean"
        except (NotImplementedError, AttributeError, RuntimeError):
            pass
    first = model.encode_location(x[:1].to(model.device), None if label is None else [label])
    return to_latent_support(first[0], support), "the latent mean of the first test example"


def _traversals(model: VAE, x: Tensor, y: Tensor | None,
                metrics: dict[str, Any] | None) -> Picture:
    from varfam.evaluation.bounds import active_units, kl_per_dimension_mean, latent_locations

    label, label_text = _class_of_first(model, x, y)
    base, base_text = _traversal_base(model, x, label)
    if metrics is None:  # the two orders evaluate() reports
        per_dim = kl_per_dimension_mean(model, x, y=y)
        variance = active_units(latent_locations(model, x, y=y))[1]
        metrics = {"kl_per_dim": None if per_dim is None else per_dim.tolist(),
                   "latent_variance": variance.tolist()}
    score = metrics.get("kl_per_dim") or metrics["latent_variance"]
    score_name = "KL per dimension" if metrics.get("kl_per_dim") else "variance of the latent means"
    order = sorted(range(len(score)), key=lambda u: -score[u])[:10]
    steps = 9
    grid = traversal_grid(model, base, order, steps=steps, span=3.0, label=label)
    caption = ", ".join(f"z{u + 1} ({score[u]:.2f})" for u in order)
    more = f" (the top {len(order)} of {len(score)})" if len(order) < len(score) else ""
    return Picture("traversals", "Latent traversals", "traversals",
                   f"One row per latent dimension{more}, ordered by {score_name}: {caption}. "
                   f"Each row varies that dimension over −3..3 around {base_text} (other "
                   f"coordinates fixed){label_text}.", scaled_grid(grid, steps))


def _latent_map(model: VAE, x: Tensor, labels: Tensor | None) -> Picture:
    how = "the latent means" if model.latent_dim <= 2 else "the first two principal axes"
    coloured = ", coloured by label" if labels is not None else ""
    return Picture("latent-map", "Latent map", "latent map",
                   f"{x.shape[0]} test examples, {how}{coloured}.",
                   latent_map_figure(model, x, labels))


def _manifold(model: VAE, x: Tensor, y: Tensor | None) -> Picture:
    from varfam.evaluation.bounds import latent_locations

    label, label_text = _class_of_first(model, x, y)
    n = 15
    grid = manifold_grid(model, n=n, locations=latent_locations(model, x, y=y), label=label)
    return Picture("manifold", "Decoded manifold", "manifold",
                   "A 15 × 15 grid over the 2-D latent square, decoded (z1 left to right, z2 "
                   f"top to bottom decreasing){label_text}.", scaled_grid(grid, n))


def to_latent_support(z: Tensor, support: str) -> Tensor:
    """Project latents (..., D) onto a family's ``latent_support`` (see ``Family``).

    ``real`` is left alone, ``sphere`` is normalized to unit length, ``unit-cube``
    clamped to [0, 1] and ``simplex`` clamped at 0 and renormalized to sum to 1.
    """
    if support == "sphere":
        return torch.nn.functional.normalize(z, dim=-1)
    if support == "unit-cube":
        return z.clamp(0, 1)
    if support == "simplex":
        z = z.clamp_min(0)
        total = z.sum(-1, keepdim=True)
        uniform = torch.full_like(z, 1 / z.shape[-1])
        return torch.where(total > 0, z / total.clamp_min(1e-12), uniform)
    return z


@torch.no_grad()
def traversal_grid(
    model: VAE, base: Tensor, dims: list[int], steps: int = 9, span: float = 3.0,
    label: int | None = None,
) -> Tensor:
    """Latent traversals: one row per dimension in ``dims``, ``steps`` images per row.

    Row ``r`` decodes ``base`` (D,) with dimension ``dims[r]`` set to
    ``base[u] + t`` for ``t`` in ``linspace(-span, span, steps)``, projected onto the
    family's support (on the unit cube the dimension runs over [0, 1]; on the
    simplex the code moves from ``base`` to the vertex ``e_u``). Returns decoded
    means, shape (len(dims) * steps, *data_shape). ``label``: the class every image is
    decoded with, in a model conditioned on labels.
    """
    support = getattr(model.family, "latent_support", "real")
    base = base.to(model.device, torch.float32)
    t = torch.linspace(-span, span, steps, device=base.device)
    s = torch.linspace(0, 1, steps, device=base.device)
    z = base.expand(len(dims), steps, base.shape[-1]).clone()
    for r, u in enumerate(dims):
        if support == "unit-cube":
            z[r, :, u] = s
        elif support == "simplex":
            vertex = torch.zeros_like(base)
            vertex[u] = 1.0
            z[r] = (1 - s)[:, None] * base + s[:, None] * vertex
        else:
            z[r, :, u] = base[u] + t
    z = to_latent_support(z, support)
    return _decoded(model, z.reshape(-1, z.shape[-1]), label)


@torch.no_grad()
def manifold_grid(
    model: VAE, n: int = 15, locations: Tensor | None = None, label: int | None = None
) -> Tensor:
    """Decode an n × n grid over a 2-D latent square: (n * n, *data_shape), z2 decreasing by row.

    With real latents and a prior that has a mean and standard deviation, the grid
    is the prior's Gaussian quantiles 5 %..95 % on each axis, as in Kingma & Welling
    (2014), "Auto-Encoding Variational Bayes", Fig. 4. Otherwise it spans the 1 %..99 %
    quantiles of ``locations`` (N, 2), the test set's latent means, or [-3, 3]².
    ``label``: the class of a model conditioned on labels (the grid spans p(z|y), and
    every image is decoded with it).
    """
    if model.latent_dim != 2:
        raise ValueError("the manifold grid needs a 2-D latent space")
    support = getattr(model.family, "latent_support", "real")
    unit = torch.linspace(0.05, 0.95, n)
    axes = None
    if support == "real":
        try:
            p = model.prior_distribution(None if label is None else [label])
            mean = p.mean.float().cpu().reshape(-1)
            std = p.stddev.float().cpu().reshape(-1)
            if bool(torch.isfinite(mean).all() and torch.isfinite(std).all()):
                gauss = torch.distributions.Normal(0.0, 1.0).icdf(unit)
                axes = [mean[i] + std[i] * gauss for i in range(2)]
        except (NotImplementedError, AttributeError, RuntimeError):
            axes = None
    if axes is None:
        if locations is not None and locations.shape[0] > 1:
            lo = torch.quantile(locations.float().cpu(), 0.01, dim=0)
            hi = torch.quantile(locations.float().cpu(), 0.99, dim=0)
        else:
            lo, hi = torch.full((2,), -3.0), torch.full((2,), 3.0)
        axes = [lo[i] + (hi[i] - lo[i]) * torch.linspace(0, 1, n) for i in range(2)]
    z1, z2 = axes[0], axes[1].flip(0)
    grid = torch.stack(torch.meshgrid(z2, z1, indexing="ij")[::-1], -1).reshape(-1, 2)
    z = to_latent_support(grid.to(model.device), support)
    return _decoded(model, z, label)
