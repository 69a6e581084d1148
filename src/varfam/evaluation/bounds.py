"""Evaluation: ELBO, importance-sampled log-likelihood, inference gap, latent usage, probes.

Everything runs in fp32 under ``torch.inference_mode`` with the model in eval
mode (restored afterwards). Log-densities are nats per example; where the
likelihood is discrete (a probability mass) :func:`evaluate` adds bits per
dimension, ``-value / (prod(data_shape) * ln 2)``.

The measures, and where they come from:

- **ELBO** ``E_q[log p(x|z)] - KL(q(z|x) || p(z))`` with the analytic KL where one
  is registered (:func:`varfam.objectives.kl_term`), one draw of z per example.
- **Importance-sampled log-likelihood** ``log p(x) ≈ logsumexp_k log w_k - log K``
  with ``log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x)``, ``z_k ~ q(z|x)``
  (Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders"). It is a
  stochastic lower bound that tightens to ``log p(x)`` as K grows.
- **Inference gap** ``log p(x) - ELBO`` (Cremer, Li & Duvenaud 2018, "Inference
  Suboptimality in Variational Autoencoders"), with the ELBO taken as the mean of
  the same K log-weights, so both terms share their samples.
- **KL per latent dimension** in closed form where q and p factorize
  (:func:`varfam.objectives.kl_per_dimension`), and **active units**
  ``A_u = Cov_x(E_q[z_u]) > 0.01`` (Burda et al. 2016).
- **Mutual information** ``I(x; z) = E_x E_q(z|x)[log q(z|x)] - E_q(z)[log q(z)]``
  under the aggregate posterior ``q(z) = 1/M Σ_m q(z|x_m)`` of the M evaluated
  examples (the full-set mixture, not a minibatch), one draw per example, as in
  Hoffman & Johnson 2016, "ELBO surgery", and He et al. 2019, "Lagging Inference
  Networks and Posterior Collapse in Variational Autoencoders". It cannot exceed
  ``log M``.
- **Probe accuracy**: a scikit-learn logistic regression on standardized latent
  means, fitted on the training split and scored on the evaluated test examples.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from varfam.errors import VarfamError
from varfam.evaluation.importance import block_sizes, check_precision, weighed_draws
from varfam.objectives import kl_per_dimension, kl_term

if TYPE_CHECKING:  # pragma: no cover
    from varfam.data import Dataset
    from varfam.model import VAE

__all__ = [
    "elbo_terms",
    "evaluate_elbo",
    "ImportanceSampling",
    "importance_sampling",
    "importance_sampled_log_likelihood",
    "latent_locations",
    "active_units",
    "kl_per_dimension_mean",
    "mutual_information",
    "probe_accuracy",
    "bits_per_dim",
    "evaluate",
    "marginal_importance_sampling",
    "ACTIVE_THRESHOLD",
]

#: Burda et al. (2016): a latent unit is active when Cov_x(E_q[z_u]) exceeds this.
ACTIVE_THRESHOLD = 0.01


def _rows(y: Tensor | None, i: int, j: int, device: torch.device) -> Tensor | None:
    """Labels ``y[i:j]`` on ``device``, or ``None``."""
    return None if y is None else y[i:j].to(device)


def elbo_terms(model: VAE, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Single-sample (reconstruction, KL) per example for a batch ``x``: two (B,) tensors.

    For a model conditioned on labels, ``y`` (B,) are the labels: the bound is on
    ``log p(x|y)`` where a label is known; where it is hidden (``-1``, or no ``y`` for a
    model with a classifier) y is summed out and the bound is on ``log p(x)``
    (:mod:`varfam.objectives.labelled`).
    """
    if model.uses_labels:
        from varfam.objectives import Elbo

        if y is None and model.has_classifier:
            y = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
        res = Elbo()(model, x, y=y)
        return res.reconstruction, res.kl
    q = model.encode(x)
    z = q.sample()
    return model.decode(z).log_prob(x), kl_term(q, model.prior_distribution(), z)


@torch.inference_mode()
def evaluate_elbo(
    model: VAE, x: Tensor, batch_size: int = 1000, y: Tensor | None = None
) -> dict[str, float]:
    """Mean test ELBO, reconstruction term and KL over ``x`` (N, *data_shape), in nats.

    ``y`` (N,): the labels of a model conditioned on labels (see :func:`elbo_terms`);
    a model with a classifier q(y|x) also reports the ``accuracy`` of its most probable
    class on the examples whose label is known. Runs in fp32 with the model in eval
    mode (restored afterwards).
    """
    device = model.device
    recon_sum = kl_sum = 0.0
    with model.evaluating():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(device, torch.float32)
            recon, kl = elbo_terms(model, xb, _rows(y, i, i + batch_size, device))
            recon_sum += float(recon.double().sum())
            kl_sum += float(kl.double().sum())
    n = x.shape[0]
    out = {
        "elbo": (recon_sum - kl_sum) / n,
        "reconstruction": recon_sum / n,
        "kl": kl_sum / n,
    }
    if y is not None and model.has_classifier:
        from varfam.evaluation.classify import accuracy

        known = y >= 0
        if bool(known.any()):
            out["accuracy"] = accuracy(model, x[known], y[known], batch_size)
    return out


# ---------------------------------------------------------------- importance sampling
@dataclass
class ImportanceSampling:
    """Per-example results of K importance samples, float64 tensors of shape (N,), nats.

    ``log_likelihood`` is ``logsumexp_k log w_k - log K``; ``elbo`` is ``mean_k log w_k``
    (an unbiased estimate of the ELBO from the same samples).
    """

    log_likelihood: Tensor
    elbo: Tensor
    k: int


@torch.inference_mode()
def importance_sampling(
    model: VAE,
    x: Tensor,
    k: int,
    *,
    batch_size: int | None = None,
    k_chunk: int | None = None,
    memory_mb: float = 8.0,
    seed: int | None = None,
    y: Tensor | None = None,
    precision: str = "fp32",
) -> ImportanceSampling:
    """K importance samples per example of ``x`` (N, *data_shape), vectorized over examples.

    For a model conditioned on labels, ``y`` (N,) are the labels and the estimate is of
    ``log p(x|y)`` with ``z ~ q(z|x, y)``
    (:func:`marginal_importance_sampling` sums y out).

    Draws are taken one at a time for all N examples at once (so the numbers do
    not depend on the chunking); latents are then decoded in blocks of
    ``(k_chunk, batch_size, D)`` sized so that the decoder output stays within
    ``memory_mb`` (``batch_size``/``k_chunk`` override; see
    :mod:`varfam.evaluation.importance`), and the blocks are combined with a running
    log-sum-exp in float64. With ``seed`` the draws are reproducible and torch's global
    random state is left untouched. ``precision="bf16"`` runs the decoder's networks
    under bf16 autocast (the draws, q, p(z) and the log-density of x stay fp32): faster
    where the hardware has fast bf16, at a bias that ``benchmarks/loglik_precision.py``
    measures; fp32 is the default.

    >>> import varfam
    >>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
    >>> res = importance_sampling(model, torch.rand(3, 1, 8, 8).round(), k=10, seed=0)
    >>> res.log_likelihood.shape, bool((res.log_likelihood >= res.elbo).all())
    (torch.Size([3]), True)
    """
    if k < 1:
        raise VarfamError(f"the number of importance samples must be at least 1, got {k}")
    with model.evaluating(seed):
        x = x.to(model.device, torch.float32)
        n = x.shape[0]
        rows, samples = block_sizes(model, n, k, memory_mb, rows=batch_size, samples=k_chunk)
        lse = torch.full((n,), -math.inf, dtype=torch.float64, device=x.device)
        total = torch.zeros(n, dtype=torch.float64, device=x.device)
        for draws in weighed_draws(model, x, k, rows=rows, samples=samples, y=y,
                                   precision=precision):
            lse = torch.logaddexp(lse, torch.logsumexp(draws.log_w, 0))
            total += draws.log_w.sum(0)
    return ImportanceSampling((lse - math.log(k)).cpu(), (total / k).cpu(), k)


def importance_sampled_log_likelihood(
    model: VAE,
    x: Tensor,
    k: int,
    *,
    batch_size: int | None = None,
    k_chunk: int | None = None,
    memory_mb: float = 8.0,
    seed: int | None = None,
    precision: str = "fp32",
) -> Tensor:
    """Per-example ``log p(x) ≈ logsumexp_k log w_k - log K`` (N,), float64 nats.

    See :func:`importance_sampling` for the sampling, the chunking and ``precision``.
    """
    return importance_sampling(
        model, x, k, batch_size=batch_size, k_chunk=k_chunk, memory_mb=memory_mb, seed=seed,
        precision=precision,
    ).log_likelihood


# ---------------------------------------------------------------- latent usage
@torch.inference_mode()
def latent_locations(
    model: VAE, x: Tensor, batch_size: int = 1000, y: Tensor | None = None
) -> Tensor:
    """``E_q[z|x]`` (the family's point summary) for every example: (N, D) float32 on CPU.

    ``y`` (N,): the labels of a model conditioned on labels (``E_q[z|x, y]``).
    """
    with model.evaluating():
        out = [
            model.encode_location(x[i : i + batch_size].to(model.device, torch.float32),
                                  _rows(y, i, i + batch_size, model.device)).float()
            for i in range(0, x.shape[0], batch_size)
        ]
    return torch.cat(out).cpu()


def active_units(locations: Tensor, threshold: float = ACTIVE_THRESHOLD) -> tuple[int, Tensor]:
    """(number of active units, variance per dimension (D,)) of latent means (N, D).

    A unit is active when the variance of its mean over examples exceeds
    ``threshold`` (Burda et al. 2016).
    """
    var = locations.double().var(0, unbiased=False)
    return int((var > threshold).sum()), var.float()


@torch.inference_mode()
def kl_per_dimension_mean(
    model: VAE, x: Tensor, batch_size: int = 1000, y: Tensor | None = None
) -> Tensor | None:
    """Mean closed-form KL per latent dimension (D,), nats; ``None`` where it has no closed form.

    ``y`` (N,): the labels of a model conditioned on labels (KL(q(z|x, y) || p(z|y))).
    """
    total: Tensor | None = None
    for i in range(0, x.shape[0], batch_size):
        yb = _rows(y, i, i + batch_size, model.device)
        p = model.prior_distribution(yb)
        per_dim = kl_per_dimension(model.encode(x[i : i + batch_size].to(model.device), yb), p)
        if per_dim is None:
            return None
        s = per_dim.double().sum(0)
        total = s if total is None else total + s
    return None if total is None else (total / x.shape[0]).float().cpu()


@torch.inference_mode()
def mutual_information(
    model: VAE, x: Tensor, chunk: int = 256, y: Tensor | None = None
) -> float | None:
    """``I(x; z)`` under q with the full-set aggregate posterior of ``x`` (M examples), nats.

    ``E_m[log q(z_m|x_m)] - E_m[log (1/M) Σ_j q(z_m|x_j)]`` with one draw ``z_m`` per
    example. Returns ``None`` when the family cannot evaluate ``q(z|x_j)`` at
    another example's ``z`` (a density without broadcasting over examples). ``y`` (M,):
    the labels of a model conditioned on labels (each q(z|x_j, y_j)).
    """
    xs = x.to(model.device, torch.float32)
    m = xs.shape[0]
    q = model.encode(xs, None if y is None else y.to(model.device))
    z = q.sample()  # (M, D)
    own = q.log_prob(z).double()
    cross = []
    try:
        for i in range(0, m, chunk):
            lq = q.log_prob(z[i : i + chunk].unsqueeze(1))  # (c, M): every z against every x
            if lq.shape != (min(chunk, m - i), m):
                return None
            cross.append(torch.logsumexp(lq.double(), 1) - math.log(m))
    except (RuntimeError, ValueError, NotImplementedError, IndexError):
        return None
    return float(own.mean() - torch.cat(cross).mean())


def probe_accuracy(
    train_z: Tensor, train_y: Tensor, test_z: Tensor, test_y: Tensor
) -> float | None:
    """Test accuracy of a logistic-regression probe fitted on standardized latent means.

    ``None`` when it cannot be fitted (one class only, or non-finite latents).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = train_z.double().numpy(), test_z.double().numpy()
    ya, yb = train_y.cpu().numpy(), test_y.cpu().numpy()
    if len(set(ya.tolist())) < 2:
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    try:
        probe.fit(a, ya)
        return float(probe.score(b, yb))
    except ValueError:
        return None


# ---------------------------------------------------------------- everything at once
def bits_per_dim(model: VAE, value: float | None) -> float | None:
    """``-value / (prod(data_shape) * ln 2)`` for a log-mass in nats; ``None`` for densities.

    Only a discrete likelihood (``likelihood.discrete``) gives a probability mass,
    for which bits per dimension is meaningful.
    """
    if value is None or not getattr(model.likelihood, "discrete", False):
        return None
    return -value / (math.prod(model.data_shape) * math.log(2))


def _mean_se(v: Tensor) -> tuple[float, float]:
    v = v.double()
    se = float(v.std() / math.sqrt(v.numel())) if v.numel() > 1 else float("nan")
    return float(v.mean()), se


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@torch.inference_mode()
def _elbo_per_example(model: VAE, x: Tensor, batch_size: int = 1000,
                      y: Tensor | None = None) -> tuple[Tensor, Tensor]:
    recon, kl = [], []
    for i in range(0, x.shape[0], batch_size):
        r, k = elbo_terms(model, x[i : i + batch_size].to(model.device, torch.float32),
                          _rows(y, i, i + batch_size, model.device))
        recon.append(r.double().cpu())
        kl.append(k.double().cpu())
    return torch.cat(recon), torch.cat(kl)


@dataclass
class Examples:
    """What :func:`evaluate` measures: test examples ``x`` (N, *data_shape) with their
    ``labels`` (N,) or ``None``, and the training examples and labels that fit the probe."""

    x: Tensor
    labels: Tensor | None = None
    train: Tensor | None = None
    train_labels: Tensor | None = None

    @classmethod
    def of(cls, data: Dataset | Tensor, limit: int | None = None, **given: Tensor | None
           ) -> Examples:
        """The test split of a :class:`~varfam.data.Dataset` (its training split for the
        probe), or a tensor of test examples with the ``given`` labels, train and
        train_labels; the first ``limit`` test examples, read into memory."""
        if isinstance(data, Tensor):
            ex = cls(data, **given)
        else:
            ex = cls(data.test, data.test_labels, data.train, data.train_labels)
        if limit is not None:
            ex.x = ex.x[:limit]
            ex.labels = None if ex.labels is None else ex.labels[:limit]
        if not isinstance(ex.x, Tensor):  # rows of a large file (MappedRows): those measured
            ex.x = ex.x[:]
        return ex


@dataclass(frozen=True)
class Effort:
    """How much :func:`evaluate` spends: ``iw`` importance samples per example (0: none),
    ``memory_mb`` per decoder call, the first ``mi_examples`` for the mutual information
    and at most ``probe_examples`` training examples for the probe."""

    iw: int = 1000
    memory_mb: float = 8.0
    mi_examples: int = 500
    probe_examples: int = 10000
    iw_precision: str = "fp32"


def evaluate(
    model: VAE,
    data: Dataset | Tensor,
    *,
    iw: int = 1000,
    limit: int | None = None,
    labels: Tensor | None = None,
    train: Tensor | None = None,
    train_labels: Tensor | None = None,
    seed: int = 0,
    memory_mb: float = 8.0,
    mi_examples: int = 500,
    probe_examples: int = 10000,
    iw_precision: str = "fp32",
) -> dict[str, Any]:
    """Every measure of the module on the test examples of ``data``; one flat JSON-able dict.

    ``data`` is a :class:`~varfam.data.Dataset` (its test split is measured, its
    training split fits the probe) or a tensor of test examples (then give
    ``labels``, ``train`` and ``train_labels`` for the probe). The data is used as
    given: binarize it as in training first (:func:`varfam.runs.folder.run_eval_data` does).
    ``limit`` keeps the first N test examples; ``iw`` is K (0 skips importance
    sampling); the mutual information uses the first ``mi_examples`` and the
    probe at most ``probe_examples`` training examples; ``iw_precision`` is the
    decoder's precision in importance sampling (``"fp32"``, or ``"bf16"``: see
    :func:`importance_sampling`), recorded as ``log_likelihood_precision``. Values are nats per
    example (means over examples, ``*_se`` their standard errors); entries that
    do not apply are ``None``.
    """
    ex = Examples.of(data, limit, labels=labels, train=train, train_labels=train_labels)
    if ex.x.shape[0] < 1:
        raise VarfamError("there are no test examples to evaluate; check --data and --limit")
    model.check_data(ex.x, "the test data", values=True)
    check_precision(iw_precision)
    t0 = time.perf_counter()
    with model.evaluating(seed):
        out = _measure(model, ex, Effort(iw, memory_mb, mi_examples, probe_examples,
                                         iw_precision))
    out["seconds"] = time.perf_counter() - t0
    return out


def _measure(model: VAE, ex: Examples, effort: Effort) -> dict[str, Any]:
    """The measures of :func:`evaluate`, in the order they draw random numbers."""
    y = _condition(model, ex)
    out = _elbo(model, ex.x, y, effort.iw)
    if model.uses_labels:  # log p(x|y) where labels are given; M2 also sums y out
        out.update(conditional=y is not None, accuracy=None,
                   marginal_log_likelihood=None, marginal_log_likelihood_se=None)
    if effort.iw > 0 and (y is not None or not model.uses_labels):
        out.update(_importance(model, ex.x, y, effort))
    if model.has_classifier:
        out.update(_classifier(model, ex, y, effort))
    out["elbo_bpd"] = bits_per_dim(model, out["elbo"])
    out["log_likelihood_bpd"] = bits_per_dim(model, out["log_likelihood"])
    out.update(_latents(model, ex, y, effort))
    return out


def _condition(model: VAE, ex: Examples) -> Tensor | None:
    """The labels a model conditioned on labels reads (``None`` for other models, and for
    a model with a classifier measured without labels)."""
    if not model.uses_labels:
        return None
    if ex.labels is None and not model.has_classifier:
        raise VarfamError(
            "this run is conditioned on labels, but the evaluated data has none; evaluate it "
            "on labelled data"
        )
    return ex.labels


def _elbo(model: VAE, x: Tensor, y: Tensor | None, iw: int) -> dict[str, Any]:
    """The single-draw ELBO and its terms, with the importance-sampled entries unset."""
    recon, kl = _elbo_per_example(model, x, y=y)
    elbo, elbo_se = _mean_se(recon - kl)
    return {
        "n": int(x.shape[0]),
        "latent_dim": int(model.latent_dim),
        "iw": int(iw),
        "log_likelihood_precision": None,
        "elbo": elbo,
        "elbo_se": _finite(elbo_se),
        "reconstruction": float(recon.mean()),
        "kl": float(kl.mean()),
        "log_likelihood": None,
        "log_likelihood_se": None,
        "elbo_iw_samples": None,
        "inference_gap": None,
        "inference_gap_se": None,
    }


def _importance(model: VAE, x: Tensor, y: Tensor | None, effort: Effort) -> dict[str, Any]:
    """log p(x) (log p(x|y) given labels), the ELBO of the same draws and the gap."""
    res = importance_sampling(model, x, effort.iw, memory_mb=effort.memory_mb, y=y,
                              precision=effort.iw_precision)
    ll, ll_se = _mean_se(res.log_likelihood)
    gap, gap_se = _mean_se(res.log_likelihood - res.elbo)
    return {"log_likelihood": ll, "log_likelihood_se": _finite(ll_se),
            "log_likelihood_precision": effort.iw_precision,
            "elbo_iw_samples": float(res.elbo.mean()),
            "inference_gap": gap, "inference_gap_se": _finite(gap_se)}


def _classifier(model: VAE, ex: Examples, y: Tensor | None, effort: Effort) -> dict[str, Any]:
    """A classifier's accuracy and log p(x) with y summed out (which is log p(x) itself
    where the data has no labels)."""
    from varfam.evaluation.classify import accuracy

    out: dict[str, Any] = {}
    if ex.labels is not None:
        out["accuracy"] = accuracy(model, ex.x, ex.labels)
    if effort.iw > 0:
        mll, mll_se = _mean_se(
            marginal_importance_sampling(model, ex.x, effort.iw, memory_mb=effort.memory_mb,
                                         precision=effort.iw_precision)
        )
        out.update(marginal_log_likelihood=mll, marginal_log_likelihood_se=_finite(mll_se),
                   log_likelihood_precision=effort.iw_precision)
        if y is None:
            out.update(log_likelihood=mll, log_likelihood_se=_finite(mll_se))
    return out


def _latents(model: VAE, ex: Examples, y: Tensor | None, effort: Effort) -> dict[str, Any]:
    """KL per dimension, active units, mutual information and the probe's accuracy."""
    x = ex.x
    per_dim = kl_per_dimension_mean(model, x, y=y)
    locs = latent_locations(model, x, y=y)
    count, var = active_units(locs)
    m = min(effort.mi_examples, x.shape[0])
    out: dict[str, Any] = {
        "kl_per_dim": None if per_dim is None else [float(v) for v in per_dim],
        "active_units": count,
        "latent_variance": [float(v) for v in var],
        "mi_examples": m,
        "mutual_information": _finite(
            mutual_information(model, x[:m], y=None if y is None else y[:m])
        ),
        "probe_accuracy": None,
        "probe_train": None,
    }
    if ex.labels is not None and ex.train is not None and ex.train_labels is not None:
        known = ex.train_labels >= 0  # semi-supervised data: only the labels it keeps
        train = ex.train[known][: effort.probe_examples]
        train_labels = ex.train_labels[known][: effort.probe_examples]
        train_locs = latent_locations(model, train, y=train_labels if y is not None else None)
        out["probe_accuracy"] = probe_accuracy(train_locs, train_labels, locs, ex.labels)
        out["probe_train"] = train.shape[0]
    return out


def marginal_importance_sampling(
    model: VAE, x: Tensor, k: int, *, memory_mb: float = 8.0, seed: int | None = None,
    precision: str = "fp32",
) -> Tensor:
    """``log p(x) = log Σ_y p(y) p(x|y)`` per example of ``x`` (N,), float64 nats.

    Each ``p(x|y)`` is importance-sampled with ``k`` draws from ``q(z|x, y)``
    (:func:`varfam.evaluation.bounds.importance_sampling`), every class in turn: y is summed
    out exactly, at C times the cost of one conditional estimate.
    """
    c = model.condition.n_classes
    per_class = []
    for label in range(c):
        y = torch.full((x.shape[0],), label, dtype=torch.long)
        res = importance_sampling(
            model, x, k, y=y, memory_mb=memory_mb, seed=None if seed is None else seed + label,
            precision=precision,
        )
        per_class.append(res.log_likelihood)
    return torch.logsumexp(torch.stack(per_class), 0) - math.log(c)
