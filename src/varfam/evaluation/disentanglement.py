"""Disentanglement metrics on mean codes: MIG, DCI, SAP and the FactorVAE score.

Every metric follows the protocol of disentanglement_lib (Francesco Locatello et al.,
"Challenging Common Assumptions in the Unsupervised Learning of Disentangled
Representations", 2019), whose defaults are the defaults here:

- **MIG** (Ricky T. Q. Chen et al., "Isolating Sources of Disentanglement in
  Variational Autoencoders", 2018): each code dimension discretised into 20
  equal-width bins of its own range (``np.histogram`` edges, ``np.digitize``); the
  mutual information (nats) of every code with every factor; per factor the gap
  between the two most informative codes, divided by the factor's entropy; the mean
  over factors. 10,000 points. A code tells at most 20 values apart, so a factor with
  K > 20 equally likely values scores at most about log 20 / log K even where a code
  equals it (dSprites: orientation 0.81, positions 0.86; codes equal to its five
  factors score 0.90).
- **DCI** (Cian Eastwood, Christopher K. I. Williams, "A Framework for the
  Quantitative Evaluation of Disentangled Representations", 2018): one
  scikit-learn ``GradientBoostingClassifier`` (its defaults: 100 trees of depth 3)
  per factor on the codes; the absolute feature importances form the (D, F)
  importance matrix. Disentanglement: 1 minus each code's entropy over factors
  (base F), weighted by the code's share of importance; completeness: 1 minus each
  factor's entropy over codes (base D), weighted likewise; informativeness: the
  classifiers' mean accuracy on held-out points (an accuracy, not an error, as in
  disentanglement_lib). 10,000 training and 5,000 test points.
- **SAP** (Abhishek Kumar, Prasanna Sattigeri, Avinash Balakrishnan, "Variational
  Inference of Disentangled Latent Concepts from Unlabeled Observations", 2018): for
  discrete factors a ``LinearSVC(C=0.01, class_weight="balanced")`` per (code,
  factor) pair predicts the factor from that one code; the score matrix holds the
  test accuracies (for continuous factors, the squared correlation); the mean over
  factors of the gap between the two best codes. 10,000 training and 5,000 test
  points.
- **FactorVAE score** (Hyunjik Kim, Andriy Mnih, "Disentangling by Factorising",
  2018): codes divided by their standard deviation over 10,000 points; dimensions
  whose standard deviation is below 0.05 are pruned; each vote fixes one factor (at
  the value of a random point), draws 64 points sharing it, and takes the active
  dimension of least normalised variance; a majority-vote classifier maps each
  dimension to the factor it is most often the argmin for. Train accuracy on 10,000
  votes, the score is the accuracy on 5,000 more.

Where this differs from disentanglement_lib, it is because the inputs are a finite
set of rows and not a simulator: the points are a seeded random subset of the rows
given (disjoint for train and test; all rows, split in the same proportion, when
there are fewer), and the FactorVAE score draws its batches from the rows whose
factor equals the fixed value (on a full factor grid such as dSprites this is the
same distribution as disentanglement_lib's sampler). Factors are taken as classes
(each distinct value one class, as disentanglement_lib's class indices);
``factor_bins`` discretises factors with more distinct values than that into
equal-width bins (use it for continuous factors). Factors with one value carry no
information and are left out. Published MIG values depend on these choices (the
same model has been reported near 0.5 and near 0.001 by two code bases), so state
the protocol with every number.

Inputs: ``codes`` (N, D) mean codes and ``factors`` (N, F) factor values, row for
row. Every function returns a dict of floats.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> factors = rng.integers(0, 10, size=(2000, 3)).astype(float)
>>> round(mig(factors, factors)["mig"], 2)  # codes equal to the factors
0.99
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from varfam.errors import VarfamError

__all__ = [
    "histogram_discretize",
    "factor_classes",
    "mutual_information_matrix",
    "mig",
    "dci",
    "sap",
    "factor_vae_score",
]

Encode = Callable[[np.ndarray], np.ndarray]


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes (N, D) and factors (N, F) as float64; a one-line :class:`VarfamError` otherwise."""
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors, dtype=np.float64)
    if factors.ndim == 1:
        factors = factors[:, None]
    if codes.ndim != 2 or factors.ndim != 2:
        raise VarfamError(
            f"disentanglement metrics take codes (N, D) and factors (N, F), got shapes "
            f"{codes.shape} and {factors.shape}"
        )
    if codes.shape[0] != factors.shape[0]:
        raise VarfamError(
            f"the factors have {factors.shape[0]} rows but there are {codes.shape[0]} codes; "
            "give one row of factors per example"
        )
    if not (np.isfinite(codes).all() and np.isfinite(factors).all()):
        raise VarfamError("the codes or the factors hold values that are not finite")
    return codes, factors


def histogram_discretize(x: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Each column of ``x`` (N, D) as bin numbers 1..num_bins (N, D) int64, equal-width
    bins over the column's range (disentanglement_lib's ``_histogram_discretize``)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        out[:, j] = np.digitize(x[:, j], np.histogram(x[:, j], num_bins)[1][:-1])
    return out


def factor_classes(factors: np.ndarray, factor_bins: int | None = None) -> np.ndarray:
    """Factors (N, F) as class numbers 0..K-1 (N, F) int64, column by column.

    Each distinct value is one class; with ``factor_bins``, a column with more distinct
    values than that is cut into ``factor_bins`` equal-width bins first.
    """
    factors = np.asarray(factors, dtype=np.float64)
    out = np.empty(factors.shape, dtype=np.int64)
    for j in range(factors.shape[1]):
        col = factors[:, j]
        if factor_bins is not None and len(np.unique(col)) > factor_bins:
            col = histogram_discretize(col[:, None], factor_bins)[:, 0]
        out[:, j] = np.unique(col, return_inverse=True)[1].reshape(-1)
    return out


def _varying(classes: np.ndarray, names: tuple[str, ...] | None) -> tuple[np.ndarray, list[str]]:
    """The columns of ``classes`` that take more than one value, and their names."""
    names = tuple(names) if names is not None else tuple(f"factor{j}" for j in
                                                         range(classes.shape[1]))
    if len(names) != classes.shape[1]:
        raise VarfamError(
            f"{classes.shape[1]} factors but {len(names)} factor names; give one name each"
        )
    keep = [j for j in range(classes.shape[1]) if classes[:, j].max() > 0]
    if not keep:
        raise VarfamError("every factor takes a single value; the metrics need a factor that "
                          "varies")
    return classes[:, keep], [names[j] for j in keep]


def _subset(n: int, sizes: tuple[int, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint random row subsets of ``sizes`` out of ``n`` (scaled down when ``n`` is
    smaller than their sum, keeping their proportions)."""
    total = sum(sizes)
    if total > n:
        sizes = tuple(max(1, n * s // total) for s in sizes)
    perm = rng.permutation(n)
    bounds = np.cumsum((0, *sizes))
    return [perm[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _entropy(classes: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each column of ``classes`` (N, F)."""
    out = np.empty(classes.shape[1])
    for j in range(classes.shape[1]):
        p = np.bincount(classes[:, j]) / classes.shape[0]
        p = p[p > 0]
        out[j] = -(p * np.log(p)).sum()
    return out


def _mutual_information(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mutual information (nats) of every column of ``a`` (N, D) with every column of
    ``b`` (N, F), both class numbers: (D, F), plug-in estimate from the counts."""
    from sklearn.metrics import mutual_info_score

    return np.array([[mutual_info_score(b[:, j], a[:, i]) for j in range(b.shape[1])]
                     for i in range(a.shape[1])])


def mutual_information_matrix(
    codes: np.ndarray, factors: np.ndarray, *, num_bins: int = 20,
    factor_bins: int | None = None,
) -> np.ndarray:
    """Mutual information (nats) of each code with each factor: (D, F), codes discretised
    into ``num_bins`` bins (for a heat map; MIG reads it normalised)."""
    codes, factors = _check(codes, factors)
    return _mutual_information(histogram_discretize(codes, num_bins),
                               factor_classes(factors, factor_bins))


def mig(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    num_train: int = 10_000,
    num_bins: int = 20,
    factor_bins: int | None = None,
    factor_names: tuple[str, ...] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """The mutual information gap, in [0, 1] (see the module doc for the protocol).

    ``codes``: (N, D) mean codes, D >= 2; ``factors``: (N, F). ``num_train`` rows are
    used (all if fewer). Returns ``{"mig": ..., "mig_<factor>": ...}``, the mean and
    each varying factor's normalised gap.
    """
    codes, factors = _check(codes, factors)
    if codes.shape[1] < 2:
        raise VarfamError("MIG compares the two most informative codes; it needs at least "
                          "2 latent dimensions")
    rows = _subset(len(codes), (num_train,), np.random.default_rng(seed))[0]
    classes, names = _varying(factor_classes(factors[rows], factor_bins), factor_names)
    m = _mutual_information(histogram_discretize(codes[rows], num_bins), classes)
    top = np.sort(m, axis=0)[::-1]
    gaps = (top[0] - top[1]) / _entropy(classes)
    return {"mig": float(gaps.mean()), **{f"mig_{n}": float(g) for n, g in zip(names, gaps)}}


def _dci_scores(importance: np.ndarray) -> tuple[float, float]:
    """Disentanglement and completeness of an importance matrix (D, F)."""
    d, f = importance.shape
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    per_code = 1.0 - stats.entropy(importance.T + 1e-11, base=f) if f > 1 else np.ones(d)
    per_factor = 1.0 - stats.entropy(importance + 1e-11, base=d) if d > 1 else np.ones(f)
    disentanglement = np.sum(per_code * weights.sum(axis=1) / weights.sum())
    completeness = np.sum(per_factor * weights.sum(axis=0) / weights.sum())
    return float(disentanglement), float(completeness)


def dci(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    num_train: int = 10_000,
    num_test: int = 5_000,
    factor_bins: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Disentanglement, completeness and informativeness with gradient-boosted trees.

    ``codes``: (N, D); ``factors``: (N, F). One classifier per varying factor, trained
    on ``num_train`` rows and tested on ``num_test`` others (see the module doc).
    Slow at the defaults: measured about 6 s per class on one busy core here (10
    classes, D = 10: 62 s), so dSprites' 111 classes take about 10 minutes; lower
    ``num_train`` for a quick look. Returns ``dci_disentanglement``, ``dci_completeness``,
    ``dci_informativeness`` (test accuracy) and ``dci_informativeness_train``.
    """
    from sklearn.ensemble import GradientBoostingClassifier

    codes, factors = _check(codes, factors)
    rng = np.random.default_rng(seed)
    train, test = _subset(len(codes), (num_train, num_test), rng)
    classes, _ = _varying(factor_classes(factors, factor_bins), None)
    importance = np.zeros((codes.shape[1], classes.shape[1]))
    acc_train, acc_test = [], []
    for j in range(classes.shape[1]):
        y = classes[:, j]
        model = GradientBoostingClassifier(random_state=int(rng.integers(2**31)))
        if len(np.unique(y[train])) < 2:  # a tiny sample that saw one class only
            acc_train.append(1.0)
            acc_test.append(float(np.mean(y[test] == y[train][0])))
            continue
        model.fit(codes[train], y[train])
        importance[:, j] = np.abs(model.feature_importances_)
        acc_train.append(float(np.mean(model.predict(codes[train]) == y[train])))
        acc_test.append(float(np.mean(model.predict(codes[test]) == y[test])))
    disentanglement, completeness = _dci_scores(importance)
    return {
        "dci_disentanglement": disentanglement,
        "dci_completeness": completeness,
        "dci_informativeness": float(np.mean(acc_test)),
        "dci_informativeness_train": float(np.mean(acc_train)),
    }


def sap(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    num_train: int = 10_000,
    num_test: int = 5_000,
    continuous_factors: bool = False,
    factor_bins: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """The separated attribute predictability score (see the module doc).

    ``codes``: (N, D), D >= 2; ``factors``: (N, F). Discrete factors (the default):
    test accuracy of a linear SVM per (code, factor); ``continuous_factors``: the
    squared correlation on the training rows. Returns ``{"sap": ...}``.
    """
    from sklearn.svm import LinearSVC

    codes, factors = _check(codes, factors)
    if codes.shape[1] < 2:
        raise VarfamError("SAP compares the two best codes; it needs at least 2 latent "
                          "dimensions")
    train, test = _subset(len(codes), (num_train, num_test), np.random.default_rng(seed))
    if continuous_factors:
        keep = [j for j in range(factors.shape[1]) if np.ptp(factors[train, j]) > 0]
        if not keep:
            raise VarfamError("every factor takes a single value; SAP needs one that varies")
        score = np.zeros((codes.shape[1], len(keep)))
        for i in range(codes.shape[1]):
            for k, j in enumerate(keep):
                cov = np.cov(codes[train, i], factors[train, j], ddof=1)
                if cov[0, 0] > 1e-12:
                    score[i, k] = cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1])
    else:
        classes, _ = _varying(factor_classes(factors, factor_bins), None)
        score = np.zeros((codes.shape[1], classes.shape[1]))
        for i in range(codes.shape[1]):
            for j in range(classes.shape[1]):
                y = classes[:, j]
                if len(np.unique(y[train])) < 2:
                    score[i, j] = np.mean(y[test] == y[train][0])
                    continue
                svm = LinearSVC(C=0.01, class_weight="balanced")
                svm.fit(codes[train, i : i + 1], y[train])
                score[i, j] = np.mean(svm.predict(codes[test, i : i + 1]) == y[test])
    top = np.sort(score, axis=0)
    return {"sap": float(np.mean(top[-1] - top[-2]))}


def _encoder(encode: np.ndarray | Encode, n: int) -> Encode:
    if callable(encode):
        return lambda rows: np.asarray(encode(rows), dtype=np.float64)
    codes = np.asarray(encode, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[0] != n:
        raise VarfamError(
            f"the factors have {n} rows but the codes have shape {codes.shape}; give one "
            "row of factors per example"
        )
    return lambda rows: codes[rows]


def factor_vae_score(
    encode: np.ndarray | Encode,
    factors: np.ndarray,
    *,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
    factor_bins: int | None = None,
    seed: int = 0,
    chunk: int = 16_384,
) -> dict[str, float]:
    """The FactorVAE score: accuracy of the majority-vote classifier (module doc).

    ``encode``: the mean codes of the rows, either an array (N, D) or a callable that
    maps row numbers (k,) int64 to their codes (k, D), e.g.
    ``lambda rows: model.encode(x[rows]).mean.numpy()`` (called with at most
    ``chunk`` rows at a time). ``factors``: (N, F), one row per example. Returns
    ``factor_vae_score`` (accuracy on ``num_eval`` votes), ``factor_vae_train_accuracy``
    and ``factor_vae_active_dims``.
    """
    factors = np.asarray(factors, dtype=np.float64)
    if factors.ndim == 1:
        factors = factors[:, None]
    if factors.ndim != 2 or not np.isfinite(factors).all():
        raise VarfamError(f"the factors must be finite numbers (N, F), got shape {factors.shape}")
    if batch_size < 2:
        raise VarfamError(f"the FactorVAE score needs a batch of at least 2, got {batch_size}")
    n = factors.shape[0]
    codes_of = _encoder(encode, n)
    rng = np.random.default_rng(seed)
    classes, _ = _varying(factor_classes(factors, factor_bins), None)
    rows = rng.choice(n, size=min(num_variance_estimate, n), replace=False)
    global_var = np.var(codes_of(rows), axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_threshold
    if not active.any():
        return {"factor_vae_score": 0.0, "factor_vae_train_accuracy": 0.0,
                "factor_vae_active_dims": 0.0}
    # the rows of each factor sorted by class, and where each class starts and ends
    order = [np.argsort(classes[:, j], kind="stable") for j in range(classes.shape[1])]
    counts = [np.bincount(classes[:, j]) for j in range(classes.shape[1])]
    starts = [np.concatenate(([0], np.cumsum(c)[:-1])) for c in counts]

    def votes(num_points: int) -> np.ndarray:
        out = np.zeros((classes.shape[1], global_var.shape[0]), dtype=np.int64)
        per_call = max(1, chunk // batch_size)
        for lo in range(0, num_points, per_call):
            k = min(per_call, num_points - lo)
            which = rng.integers(classes.shape[1], size=k)  # the factor held fixed
            anchor = rng.integers(n, size=k)  # a random point gives its value
            batch = np.empty((k, batch_size), dtype=np.int64)
            for p in range(k):
                j = which[p]
                c = classes[anchor[p], j]
                batch[p] = order[j][starts[j][c] + rng.integers(counts[j][c], size=batch_size)]
            z = codes_of(batch.reshape(-1)).reshape(k, batch_size, -1)
            local = np.var(z, axis=1, ddof=1)[:, active] / global_var[active]
            dims = np.flatnonzero(active)[np.argmin(local, axis=1)]
            np.add.at(out, (which, dims), 1)
        return out

    train_votes = votes(num_train)
    classifier = np.argmax(train_votes, axis=0)  # each dimension's most voted factor
    dims = np.arange(train_votes.shape[1])
    eval_votes = votes(num_eval)
    return {
        "factor_vae_score": float(eval_votes[classifier, dims].sum() / eval_votes.sum()),
        "factor_vae_train_accuracy": float(train_votes[classifier, dims].sum()
                                           / train_votes.sum()),
        "factor_vae_active_dims": float(active.sum()),
    }
