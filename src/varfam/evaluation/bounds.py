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

        if y is None and model.condition.classifier is not None:
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
    was_training = model.training
    model.eval()
    device = model.device
    recon_sum = kl_sum = 0.0
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(device, torch.float32)
            recon, kl = elbo_terms(model, xb, _rows(y, i, i + batch_size, device))
            recon_sum += float(recon.double().sum())
            kl_sum += float(kl.double().sum())
    finally:
        model.train(was_training)
    n = x.shape[0]
    out = {
        "elbo": (recon_sum - kl_sum) / n,
        "reconstruction": recon_sum / n,
        "kl": kl_sum / n,
    }
    if y is not None and model.uses_labels and model.condition.classifier is not None:
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


def _chunks(model: VAE, n: int, k: int, batch_size: int | None, k_chunk: int | None,
            memory_mb: float) -> tuple[int, int]:
    """Examples and samples per decoder call so that its output fits ``memory_mb``."""
    per_row = 4 * getattr(model.likelihood, "params_per_value", 1) * math.prod(model.data_shape)
    rows = max(1, int(memory_mb * 2**20) // max(per_row, 1))
    b = max(1, min(n, batch_size or rows))
    kc = max(1, min(k, k_chunk or rows // b))
    return b, kc


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
) -> ImportanceSampling:
    """K importance samples per example of ``x`` (N, *data_shape), vectorized over examples.

    For a model conditioned on labels, ``y`` (N,) are the labels and the estimate is of
    ``log p(x|y)`` with ``z ~ q(z|x, y)``
    (:func:`marginal_importance_sampling` sums y out).

    Draws are taken one at a time for all N examples at once (so the numbers do
    not depend on the chunking); latents are then decoded in blocks of
    ``(k_chunk, batch_size, D)`` sized so that the decoder output stays within
    ``memory_mb`` (``batch_size``/``k_chunk`` override), and the blocks are
    combined with a running log-sum-exp in float64. With ``seed`` the draws are
    reproducible and torch's global random state is left untouched.

    >>> import varfam
    >>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
    >>> res = importance_sampling(model, torch.rand(3, 1, 8, 8).round(), k=10, seed=0)
    >>> res.log_likelihood.shape, bool((res.log_likelihood >= res.elbo).all())
    (torch.Size([3]), True)
    """
    if k < 1:
        raise VarfamError(f"the number of importance samples must be at least 1, got {k}")
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return _importance_sampling(model, x, k, batch_size, k_chunk, memory_mb, y)


def _importance_sampling(model: VAE, x: Tensor, k: int, batch_size: int | None,
                         k_chunk: int | None, memory_mb: float,
                         y: Tensor | None = None) -> ImportanceSampling:
    was_training = model.training
    model.eval()
    try:
        x = x.to(model.device, torch.float32)
        n = x.shape[0]
        b, kc = _chunks(model, n, k, batch_size, k_chunk, memory_mb)
        y = model.labels(y, n) if y is not None else None
        p = model.prior_distribution(y)
        q = model.encode(x, y)  # batch (N,)
        # what the likelihood computes from x alone, once per block rather than per sample
        observed = [model.observe(x[i : i + b]) for i in range(0, n, b)]
        lse = torch.full((n,), -math.inf, dtype=torch.float64, device=x.device)
        total = torch.zeros(n, dtype=torch.float64, device=x.device)
        done = 0
        while done < k:
            m = min(kc, k - done)
            zs, lws = [], []
            for _ in range(m):
                z = q.sample()  # (N, D); log_prob on this very tensor lets flows reuse caches
                lws.append(p.log_prob(z) - q.log_prob(z))
                zs.append(z)
            z = torch.stack(zs)  # (m, N, D)
            log_w = torch.stack(lws).float()  # (m, N)
            for j, i in enumerate(range(0, n, b)):
                log_w[:, i : i + b] += model.log_likelihood(
                    x[i : i + b], z[:, i : i + b], observed[j], _rows(y, i, i + b, x.device)
                )
            log_w = log_w.double()
            lse = torch.logaddexp(lse, torch.logsumexp(log_w, 0))
            total += log_w.sum(0)
            done += m
    finally:
        model.train(was_training)
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
) -> Tensor:
    """Per-example ``log p(x) ≈ logsumexp_k log w_k - log K`` (N,), float64 nats.

    See :func:`importance_sampling` for the sampling and chunking.
    """
    return importance_sampling(
        model, x, k, batch_size=batch_size, k_chunk=k_chunk, memory_mb=memory_mb, seed=seed
    ).log_likelihood


# ---------------------------------------------------------------- latent usage
@torch.inference_mode()
def latent_locations(
    model: VAE, x: Tensor, batch_size: int = 1000, y: Tensor | None = None
) -> Tensor:
    """``E_q[z|x]`` (the family's point summary) for every example: (N, D) float32 on CPU.

    ``y`` (N,): the labels of a model conditioned on labels (``E_q[z|x, y]``).
    """
    was_training = model.training
    model.eval()
    try:
        out = [
            model.encode_location(x[i : i + batch_size].to(model.device, torch.float32),
                                  _rows(y, i, i + batch_size, model.device)).float()
            for i in range(0, x.shape[0], batch_size)
        ]
    finally:
        model.train(was_training)
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
) -> dict[str, Any]:
    """Every measure of the module on the test examples of ``data``; one flat JSON-able dict.

    ``data`` is a :class:`~varfam.data.Dataset` (its test split is measured, its
    training split fits the probe) or a tensor of test examples (then give
    ``labels``, ``train`` and ``train_labels`` for the probe). The data is used as
    given: binarize it as in training first (:func:`varfam.runs.folder.run_eval_data` does).
    ``limit`` keeps the first N test examples; ``iw`` is K (0 skips importance
    sampling); the mutual information uses the first ``mi_examples`` and the
    probe at most ``probe_examples`` training examples. Values are nats per
    example (means over examples, ``*_se`` their standard errors); entries that
    do not apply are ``None``.
    """
    if not isinstance(data, Tensor):
        x, labels = data.test, data.test_labels
        train, train_labels = data.train, data.train_labels
    else:
        x = data
    if limit is not None:
        x = x[:limit]
        labels = None if labels is None else labels[:limit]
    if not isinstance(x, Tensor):  # rows of a large file (MappedRows): read those measured
        x = x[:]
    if x.shape[0] < 1:
        raise VarfamError("there are no test examples to evaluate; check --data and --limit")
    if tuple(x.shape[1:]) != tuple(model.data_shape):
        raise VarfamError(
            f"data of shape {tuple(x.shape[1:])} does not fit this model's {model.data_shape}; "
            "evaluate on data like the training data"
        )
    model.likelihood.check_data(x)
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    devices = [model.device] if model.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = _measure(model, x, labels, train, train_labels, iw, memory_mb,
                           mi_examples, probe_examples)
    finally:
        model.train(was_training)
    out["seconds"] = time.perf_counter() - t0
    return out


def _measure(model: VAE, x: Tensor, labels: Tensor | None, train: Tensor | None,
             train_labels: Tensor | None, iw: int, memory_mb: float, mi_examples: int,
             probe_examples: int) -> dict[str, Any]:
    y = labels if model.uses_labels else None  # the condition of a model conditioned on labels
    classifier = model.uses_labels and model.condition.classifier is not None
    if model.uses_labels and y is None and not classifier:
        raise VarfamError(
            "this run is conditioned on labels, but the evaluated data has none; evaluate it "
            "on labelled data"
        )
    recon, kl = _elbo_per_example(model, x, y=y)
    elbo, elbo_se = _mean_se(recon - kl)
    out: dict[str, Any] = {
        "n": int(x.shape[0]),
        "latent_dim": int(model.latent_dim),
        "iw": int(iw),
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
    if model.uses_labels:  # log p(x|y) where labels are given; M2 also sums y out
        out.update(conditional=y is not None, accuracy=None,
                   marginal_log_likelihood=None, marginal_log_likelihood_se=None)
    if iw > 0 and (y is not None or not model.uses_labels):
        res = importance_sampling(model, x, iw, memory_mb=memory_mb, y=y)
        ll, ll_se = _mean_se(res.log_likelihood)
        gap, gap_se = _mean_se(res.log_likelihood - res.elbo)
        out.update(log_likelihood=ll, log_likelihood_se=_finite(ll_se),
                   elbo_iw_samples=float(res.elbo.mean()),
                   inference_gap=gap, inference_gap_se=_finite(gap_se))
    if classifier:
        from varfam.evaluation.classify import accuracy

        if labels is not None:
            out["accuracy"] = accuracy(model, x, labels)
        if iw > 0:
            mll, mll_se = _mean_se(marginal_importance_sampling(model, x, iw, memory_mb=memory_mb))
            out.update(marginal_log_likelihood=mll, marginal_log_likelihood_se=_finite(mll_se))
            if y is None:  # no labels: log p(x) is the marginal
                out.update(log_likelihood=mll, log_likelihood_se=_finite(mll_se))
    out["elbo_bpd"] = bits_per_dim(model, out["elbo"])
    out["log_likelihood_bpd"] = bits_per_dim(model, out["log_likelihood"])

    per_dim = kl_per_dimension_mean(model, x, y=y)
    out["kl_per_dim"] = None if per_dim is None else [float(v) for v in per_dim]
    locs = latent_locations(model, x, y=y)
    count, var = active_units(locs)
    out["active_units"] = count
    out["latent_variance"] = [float(v) for v in var]
    m = min(mi_examples, x.shape[0])
    out["mi_examples"] = m
    out["mutual_information"] = _finite(
        mutual_information(model, x[:m], y=None if y is None else y[:m])
    )
    out["probe_accuracy"] = None
    out["probe_train"] = None
    if labels is not None and train is not None and train_labels is not None:
        known = train_labels >= 0  # semi-supervised data: only the labels it keeps
        train, train_labels = train[known][:probe_examples], train_labels[known][:probe_examples]
        n_train = train.shape[0]
        train_locs = latent_locations(model, train, y=train_labels if y is not None else None)
        out["probe_accuracy"] = probe_accuracy(train_locs, train_labels, locs, labels)
        out["probe_train"] = n_train
    return out


def marginal_importance_sampling(
    model: VAE, x: Tensor, k: int, *, memory_mb: float = 8.0, seed: int | None = None
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
            model, x, k, y=y, memory_mb=memory_mb, seed=None if seed is None else seed + label
        )
        per_class.append(res.log_likelihood)
    return torch.logsumexp(torch.stack(per_class), 0) - math.log(c)
