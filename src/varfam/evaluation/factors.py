"""A trained model's disentanglement: MIG, DCI, SAP and the FactorVAE score on its mean codes.

:func:`factor_scores` encodes rows of a data set whose generating factors are known
(``Dataset.train_factors``/``test_factors``: dSprites, or an ``.npz`` with a ``factors``
array) to their mean codes (:meth:`VAE.encode_location <varfam.model.VAE.encode_location>`,
the mean of q(z|x) where it has one) and scores them with
:mod:`varfam.evaluation.disentanglement` on the disentanglement_lib protocol (its module
doc states the sample sizes, the discretisation and the classifiers). The rows are the
training and test rows together (an unsupervised score has no held-out split; the
metrics draw their own disjoint train and test points), or a seeded random subset of
``rows`` of them: then the FactorVAE score's batches, which hold one factor fixed, are
drawn from the subset's rows with that value.

>>> import torch
>>> from varfam import VAE
>>> from varfam.data import Dataset
>>> x = torch.rand(300, 1, 4, 4)
>>> f = torch.randint(0, 3, (300, 2)).float()
>>> data = Dataset("toy", x[:250], x[250:], train_factors=f[:250], test_factors=f[250:])
>>> model = VAE.build(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2)
>>> s = factor_scores(model, data, num_train=200, num_test=100, metrics=("mig",))
>>> s["factor_rows"], 0.0 <= s["mig"] <= 1.0
(300, True)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from varfam.data import Dataset
from varfam.errors import VarfamError
from varfam.evaluation.disentanglement import dci, factor_vae_score, mig, sap

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["factor_scores", "factor_rows", "mean_codes", "METRICS", "no_factors"]

#: The metrics :func:`factor_scores` computes, by name.
METRICS = ("mig", "dci", "sap", "factor_vae")


def no_factors(data: Dataset) -> VarfamError:
    return VarfamError(
        f"data '{data.name}' has no factors; the disentanglement metrics need the known "
        "generating factors of each example: use --data dsprites, or an .npz with an array "
        "'factors' (N, F) beside the images"
    )


def factor_rows(data: Dataset) -> list[tuple[Any, torch.Tensor, torch.Tensor | None]]:
    """The parts of ``data`` that carry factors: (inputs (N, ...), factors (N, F), labels)."""
    parts = [(data.train, data.train_factors, data.train_labels),
             (data.test, data.test_factors, data.test_labels)]
    parts = [p for p in parts if p[1] is not None and len(p[0])]
    if not parts:
        raise no_factors(data)
    for x, f, _ in parts:
        if f.shape[0] != len(x):  # a Dataset checks this when made; a changed one here
            raise VarfamError(
                f"the factors of {data.name} have {f.shape[0]} rows but there are {len(x)} "
                "examples; give one row of factors per example"
            )
    return parts


@torch.no_grad()
def mean_codes(
    model: VAE, x: Any, index: np.ndarray, labels: torch.Tensor | None = None, chunk: int = 1024
) -> np.ndarray:
    """Mean codes (len(index), D) float64 of rows ``index`` of ``x`` (a tensor, an array or
    file-backed rows), encoded ``chunk`` rows at a time; ``labels``: a conditioned model's."""
    out = np.empty((len(index), model.latent_dim))
    with model.evaluating():
        for i in range(0, len(index), chunk):
            rows = index[i : i + chunk]
            xb = torch.as_tensor(x[rows], dtype=torch.float32).to(model.device)
            y = labels[torch.as_tensor(rows)] if labels is not None else None
            out[i : i + len(rows)] = model.encode_location(xb, y).double().cpu().numpy()
    return out


def factor_scores(
    model: VAE,
    data: Dataset,
    *,
    rows: int | None = None,
    seed: int = 0,
    num_train: int = 10_000,
    num_test: int = 5_000,
    metrics: tuple[str, ...] = METRICS,
    factor_bins: int | None = None,
) -> dict[str, Any]:
    """MIG, DCI, SAP and the FactorVAE score of ``model``'s mean codes on ``data`` (module doc).

    ``rows``: encode a seeded random subset of this many rows (default all);
    ``num_train``/``num_test``: each metric's training and test points (votes for the
    FactorVAE score; disentanglement_lib's 10,000 and 5,000 by default; MIG uses
    ``num_train``); ``metrics``: any of :data:`METRICS`; ``factor_bins``: cut factors with
    more distinct values into this many bins (continuous factors). Returns the metrics'
    numbers (``mig``, ``mig_<factor>``, ``dci_*``, ``sap``, ``factor_vae_*``) with
    ``factor_rows`` (rows encoded) and ``factor_seconds``.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise VarfamError(f"unknown disentanglement metric '{unknown[0]}'; the metrics: "
                          f"{', '.join(METRICS)}")
    start = time.perf_counter()
    parts = factor_rows(data)
    sizes = [len(x) for x, _, _ in parts]
    total = sum(sizes)
    rng = np.random.default_rng(seed)
    chosen = np.arange(total) if rows is None or rows >= total else np.sort(
        rng.choice(total, size=rows, replace=False))
    codes, factors = [], []
    offset = 0
    for (x, f, y), n in zip(parts, sizes):
        mine = chosen[(chosen >= offset) & (chosen < offset + n)] - offset
        offset += n
        if not len(mine):
            continue
        codes.append(mean_codes(model, x, mine, y if model.uses_labels else None))
        factors.append(f[torch.as_tensor(mine)].double().numpy())
    z, f = np.concatenate(codes), np.concatenate(factors)
    out: dict[str, Any] = {"factor_rows": int(len(z))}
    sizes_kw = {"num_train": num_train, "factor_bins": factor_bins, "seed": seed}
    if "mig" in metrics:
        out.update(mig(z, f, factor_names=data.factor_names, **sizes_kw))
    if "dci" in metrics:
        out.update(dci(z, f, num_test=num_test, **sizes_kw))
    if "sap" in metrics:
        out.update(sap(z, f, num_test=num_test, **sizes_kw))
    if "factor_vae" in metrics:
        out.update(factor_vae_score(z, f, num_eval=num_test, **sizes_kw))
    out["factor_seconds"] = time.perf_counter() - start
    return out
