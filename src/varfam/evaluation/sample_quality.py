"""Sample quality, offline: Fréchet distance, KID, precision and recall on varfam's features.

Every measure compares a *candidate* set of features (the model's samples) with a
*reference* set (the training data), both (N, F), in the feature space of
:mod:`varfam.evaluation.features`:

- **FD**, the Fréchet distance between Gaussians fitted to the two sets (Heusel et
  al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium"): ``|mu_r - mu_c|^2 + tr(S_r + S_c - 2 (S_r^(1/2) S_c S_r^(1/2))^(1/2))``.
  It is biased upwards at small N, so compare numbers of the same N only.
- **KID**, the squared MMD with the kernel ``k(a, b) = (a·b / F + 1)^3``, estimated
  without bias on random subsets and averaged (Bińkowski et al. 2018, "Demystifying
  MMD GANs"); it can be slightly negative when the sets match.
- **precision** and **recall** (Kynkäänniemi et al. 2019, "Improved Precision and
  Recall Metric for Assessing Generative Models"): the share of samples inside the
  reference manifold (the union of balls reaching each reference point's k-th nearest
  neighbour), and the share of reference points inside the samples' manifold.

Each comes with its **floor**: the same measure between the test set and the
training set, what a perfect sampler of the data distribution would score at the
test set's size. These numbers compare models on the same data set inside varfam;
they are not the Inception FIDs of papers.

>>> import torch
>>> a, b = torch.randn(500, 4, dtype=torch.float64), torch.randn(500, 4, dtype=torch.float64)
>>> q = sample_quality(a, a)
>>> (round(q.fd, 6), q.precision, q.recall)
(0.0, 1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from varfam.errors import VarfamError

if TYPE_CHECKING:
    from varfam.config import RunConfig
    from varfam.evaluation.features import FeatureExtractor
    from varfam.model import VAE
    from varfam.samplers.base import Sampler

__all__ = [
    "gaussian_stats",
    "frechet_distance",
    "fd",
    "kid",
    "precision_recall",
    "SampleQuality",
    "sample_quality",
    "draw_samples",
    "measure_samples",
    "run_sample_quality",
    "NOTE",
]

#: What the numbers are, said wherever they are printed.
NOTE = ("measured on varfam's own feature network for this data set: they compare "
        "models on the same data inside varfam, and are not the Inception FIDs of papers")


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (F,) and covariance (F, F) of ``features`` (N, F), float64 (N - 1 divisor)."""
    f = features.double()
    if f.shape[0] < 2:
        raise VarfamError(f"the Fréchet distance needs at least 2 examples, got {f.shape[0]}")
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (f.shape[0] - 1)


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, cov1) and N(mu2, cov2).

    ``tr(S1^(1/2) S2 S1^(1/2))^(1/2)`` equals ``tr (S1 S2)^(1/2)`` and is computed from
    the eigenvalues of the symmetric matrix, which is stable where scipy's ``sqrtm``
    of the non-symmetric product is not. Shapes (F,), (F, F); float64.

    >>> import torch
    >>> eye = torch.eye(2, dtype=torch.float64)
    >>> frechet_distance(torch.zeros(2), eye, torch.ones(2), 4 * eye)  # 2 + 2 * (2 - 1)^2
    4.0
    """
    mu1, mu2, cov1, cov2 = (t.double() for t in (mu1, mu2, cov1, cov2))
    root = _sqrt_psd(cov1)
    cross = torch.linalg.eigvalsh(root @ cov2 @ root).clamp_min(0).sqrt().sum()
    value = (mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross
    return max(float(value), 0.0)


def fd(reference: Tensor, candidate: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, F) and (M, F)."""
    return frechet_distance(*gaussian_stats(reference), *gaussian_stats(candidate))


def _polynomial_kernel(a: Tensor, b: Tensor) -> Tensor:
    return (a @ b.T / a.shape[1] + 1) ** 3


def kid(reference: Tensor, candidate: Tensor, *, subsets: int = 50, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception-style distance: unbiased MMD^2 (cubic polynomial kernel), mean and
    standard deviation over ``subsets`` random subsets of ``min(subset_size, N, M)`` rows.

    Sets (N, F) and (M, F). Per subset pair X, Y of size m:
    ``sum_{i≠j} k(x_i, x_j) / (m(m-1)) + sum_{i≠j} k(y_i, y_j) / (m(m-1)) - 2 mean k(x_i, y_j)``.
    """
    r, c = reference.double(), candidate.double()
    m = min(subset_size, r.shape[0], c.shape[0])
    if m < 2:
        raise VarfamError(f"KID needs at least 2 examples in each set, got {r.shape[0]} "
                          f"and {c.shape[0]}")
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = r[torch.randperm(r.shape[0], generator=generator)[:m]]
        y = c[torch.randperm(c.shape[0], generator=generator)[:m]]
        kxx, kyy = _polynomial_kernel(x, x), _polynomial_kernel(y, y)
        off_diagonal = kxx.sum() - kxx.trace() + kyy.sum() - kyy.trace()
        within = off_diagonal / (m * (m - 1))
        values.append(float(within - 2 * _polynomial_kernel(x, y).mean()))
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std()) if len(values) > 1 else 0.0


def _kth_neighbour_radius(points: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """Distance from each row of ``points`` (N, F) to its k-th nearest other row: (N,)."""
    radii = []
    for start in range(0, points.shape[0], chunk):
        d = torch.cdist(points[start:start + chunk], points)
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])  # [:, 0] is itself
    return torch.cat(radii)


def _inside(queries: Tensor, points: Tensor, radii: Tensor, chunk: int = 1024) -> Tensor:
    """For each query (Q, F): whether some ball (points (N, F), radii (N,)) holds it: (Q,)."""
    hits = []
    for start in range(0, queries.shape[0], chunk):
        d = torch.cdist(queries[start:start + chunk], points)
        hits.append((d <= radii).any(dim=1))
    return torch.cat(hits)


def precision_recall(reference: Tensor, candidate: Tensor, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds.

    precision: the share of ``candidate`` rows (M, F) inside the manifold of
    ``reference`` (N, F); recall: the share of ``reference`` rows inside the manifold
    of ``candidate``. A manifold is the union of balls centred at each row with the
    distance to its ``k``-th nearest neighbour in the same set as radius.
    """
    r, c = reference.float(), candidate.float()
    if min(r.shape[0], c.shape[0]) <= k:
        raise VarfamError(f"precision and recall with k = {k} need more than {k} examples "
                          f"in each set, got {r.shape[0]} and {c.shape[0]}")
    precision = _inside(c, r, _kth_neighbour_radius(r, k)).double().mean()
    recall = _inside(r, c, _kth_neighbour_radius(c, k)).double().mean()
    return float(precision), float(recall)


@dataclass(frozen=True)
class SampleQuality:
    """The four measures of one candidate set against the reference set.

    ``fd``: Fréchet distance; ``kid`` (and its spread over subsets ``kid_std``);
    ``precision``, ``recall`` in [0, 1]; ``n`` candidate and ``n_reference`` reference
    examples.
    """

    fd: float
    kid: float
    kid_std: float
    precision: float
    recall: float
    n: int
    n_reference: int

    def as_record(self) -> dict[str, Any]:
        """A flat dict with rounded numbers, for metrics.jsonl and tables."""
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def sample_quality(reference: Tensor, candidate: Tensor, *, k: int = 3, kid_subsets: int = 50,
                   seed: int = 0) -> SampleQuality:
    """FD, KID, precision and recall of ``candidate`` (M, F) against ``reference`` (N, F)."""
    mean, std = kid(reference, candidate, subsets=kid_subsets, seed=seed)
    precision, recall = precision_recall(reference, candidate, k=k)
    return SampleQuality(fd(reference, candidate), mean, std, precision, recall,
                         int(candidate.shape[0]), int(reference.shape[0]))


@torch.no_grad()
def draw_samples(model: VAE, n: int, sampler: Sampler | None = None, *, seed: int = 0,
                 batch_size: int = 1000) -> Tensor:
    """``n`` samples of ``model`` (n, *data_shape) on the CPU, decoded means, drawn with
    ``sampler`` (the prior when None) in eval mode, torch's random state forked and
    seeded by ``seed`` (:meth:`~varfam.model.VAE.evaluating`).

    A model conditioned on labels draws its classes uniformly.
    """
    with model.evaluating(seed):
        parts = [model.sample(min(batch_size, n - start), sampler=sampler).cpu()
                 for start in range(0, n, batch_size)]
    return torch.cat(parts)


def measure_samples(
    model: VAE,
    samplers: Mapping[str, Sampler],
    features: FeatureExtractor,
    train: Tensor,
    test: Tensor,
    *,
    n: int | None = None,
    k: int = 3,
    max_reference: int = 10_000,
    seed: int = 0,
) -> dict[str, SampleQuality]:
    """Each sampler's :class:`SampleQuality` against the training data, and the floor.

    ``train``/``test``: the data (N, *data_shape), as in [0, 1] as the model's samples.
    The reference is the training set (a seeded subset of ``max_reference`` rows if
    larger); ``n`` samples per sampler (default: the test set's size, so the samples
    and the floor are measured at the same size). Returns ``{"floor": ..., NAME: ...}``,
    the floor being the test set against the same reference.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise VarfamError(f"the number of samples must be a positive integer, got {n!r}")
    n = n or int(test.shape[0])
    if train.shape[0] > max_reference:
        keep = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(seed))
        train = train[keep[:max_reference]]
    reference = features(train)
    out = {"floor": sample_quality(reference, features(test), k=k, seed=seed)}
    for name, sampler in samplers.items():
        out[name] = sample_quality(reference, features(draw_samples(model, n, sampler, seed=seed)),
                                   k=k, seed=seed)
    return out


def run_sample_quality(
    run_dir: str | Path,
    model: VAE,
    cfg: RunConfig,
    samplers: Sequence[str],
    *,
    n: int | None = None,
    refit: bool = False,
    seed: int = 0,
    k: int = 3,
) -> tuple[dict[str, SampleQuality], dict[str, str], FeatureExtractor]:
    """:func:`measure_samples` for a saved run (``varfam eval RUN --samples N``).

    Reads the run's data, gets its feature network (:func:`feature_extractor`: trained
    on the data's labels on first use, then cached), fits or loads each sampler of
    ``samplers`` in ``RUN/samplers/`` (:func:`varfam.samplers.run_sampler`) and
    measures ``n`` samples of each (default: the test set's size). Returns the
    measures (``"floor"`` first), each sampler's :meth:`describe`, and the extractor.
    """
    from varfam.evaluation.features import feature_extractor
    from varfam.runs.folder import run_dataset
    from varfam.samplers import SAMPLERS, run_sampler

    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise VarfamError(f"the number of samples must be a positive integer, got {n!r}")
    for name in samplers:
        SAMPLERS.get(name)  # an unknown name is refused before any work
    ds = run_dataset(cfg)
    model.check_data(ds, "the run's data")
    features = feature_extractor(ds.train, ds.train_labels, test=ds.test,
                                 test_labels=ds.test_labels)
    fitted = {name: run_sampler(run_dir, model, cfg, name, refit=refit) for name in samplers}
    quality = measure_samples(model, fitted, features, ds.train, ds.test, n=n, k=k, seed=seed)
    return quality, {name: s.describe() for name, s in fitted.items()}, features
