"""Disentanglement metrics on synthetic codes whose answer is known, and MIG against a
direct re-implementation."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from varfam.errors import VarfamError
from varfam.evaluation.disentanglement import (
    dci,
    factor_vae_score,
    histogram_discretize,
    mig,
    mutual_information_matrix,
    sap,
)

N = 6000
SIZES = (3, 6, 8, 5)


@pytest.fixture(scope="module")
def cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Factors (N, 4) drawn independently, and codes: equal to the standardised factors,
    turned by a random rotation, pure noise, and the factors with some noise."""
    rng = np.random.default_rng(1)
    f = np.stack([rng.integers(0, k, N) for k in SIZES], axis=1).astype(float)
    z = (f - f.mean(0)) / f.std(0)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    noise = rng.normal(size=(N, 4))
    return {"equal": (z, f), "rotated": (z @ q, f), "noise": (noise, f),
            "noisy": (z + 0.3 * noise, f)}


def test_mig_known_cases(cases) -> None:
    scores = {k: mig(*v)["mig"] for k, v in cases.items()}
    assert scores["equal"] > 0.99
    assert scores["noise"] < 0.02
    assert scores["rotated"] < 0.5 * scores["equal"]
    assert scores["noise"] < scores["noisy"] < scores["equal"]


def test_mig_per_factor_and_names(cases) -> None:
    out = mig(*cases["equal"], factor_names=("a", "b", "c", "d"))
    assert set(out) == {"mig", "mig_a", "mig_b", "mig_c", "mig_d"}
    assert out["mig"] == pytest.approx(np.mean([out[f"mig_{n}"] for n in "abcd"]))


def _direct_mig(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> float:
    """MIG from the definitions, with plain loops: equal-width bins, plug-in MI in nats,
    gap of the two largest over the factor's entropy, mean over factors."""
    n, d = codes.shape

    def discretise(col: np.ndarray) -> list[int]:
        lo, hi = float(col.min()), float(col.max())
        width = (hi - lo) / bins
        return [min(int((v - lo) / width), bins - 1) for v in col]

    def entropy(a: list) -> float:
        return -sum(c / n * math.log(c / n) for c in Counter(a).values())

    def mutual_info(a: list, b: list) -> float:
        pa, pb, pab = Counter(a), Counter(b), Counter(zip(a, b))
        return sum(c / n * math.log(c * n / (pa[x] * pb[y])) for (x, y), c in pab.items())

    gaps = []
    for j in range(factors.shape[1]):
        y = list(factors[:, j])
        mis = sorted((mutual_info(discretise(codes[:, i]), y) for i in range(d)), reverse=True)
        gaps.append((mis[0] - mis[1]) / entropy(y))
    return sum(gaps) / len(gaps)


def test_mig_agrees_with_a_direct_computation() -> None:
    rng = np.random.default_rng(5)
    f = np.stack([rng.integers(0, 4, 400), rng.integers(0, 7, 400)], axis=1).astype(float)
    codes = np.c_[f[:, 0] + 0.5 * rng.normal(size=400), f[:, 1] * 0.3 + rng.normal(size=400),
                  rng.normal(size=400)]
    assert mig(codes, f)["mig"] == pytest.approx(_direct_mig(codes, f), abs=1e-9)


def test_histogram_discretize_matches_equal_width_bins() -> None:
    x = np.array([[0.0], [0.49], [0.5], [1.0]])
    assert histogram_discretize(x, 2)[:, 0].tolist() == [1, 1, 2, 2]


def test_mutual_information_matrix_shape(cases) -> None:
    m = mutual_information_matrix(*cases["equal"])
    assert m.shape == (4, 4)
    assert np.allclose(np.diag(m), [math.log(k) for k in SIZES], atol=0.01)


def test_constant_factor_is_left_out(cases) -> None:
    z, f = cases["equal"]
    out = mig(z, np.c_[f, np.ones(N)], factor_names=("a", "b", "c", "d", "colour"))
    assert "mig_colour" not in out and out["mig"] > 0.99


def test_sap_known_cases(cases) -> None:
    s = {k: sap(*v, num_train=2000, num_test=1000)["sap"] for k, v in cases.items()}
    assert s["noise"] < 0.05
    assert s["equal"] > 0.2
    assert s["rotated"] < s["equal"] and s["noise"] < s["noisy"]


def test_sap_continuous(cases) -> None:
    eq = sap(*cases["equal"], continuous_factors=True)["sap"]
    assert eq > 0.95
    assert sap(*cases["noise"], continuous_factors=True)["sap"] < 0.01


@pytest.mark.slow  # kept out of make test's 4-minute budget
def test_dci_known_cases(cases) -> None:
    # two factors (3 and 6 classes): the boosted trees cost about 1 ms each per class
    kw = {"num_train": 400, "num_test": 200}
    z, f = cases["equal"][0][:, :2], cases["equal"][1][:, :2]
    turn = np.array([[1.0, 1.0], [-1.0, 1.0]]) / np.sqrt(2)
    eq = dci(z, f, **kw)
    assert eq["dci_disentanglement"] > 0.95 and eq["dci_completeness"] > 0.95
    assert eq["dci_informativeness"] > 0.95
    noise = dci(cases["noise"][0][:, :2], f, **kw)
    assert noise["dci_disentanglement"] < 0.2 and noise["dci_completeness"] < 0.2
    assert noise["dci_informativeness"] < 0.5
    rot = dci(z @ turn, f, **kw)
    assert rot["dci_disentanglement"] < eq["dci_disentanglement"] - 0.3


def test_factor_vae_score_known_cases(cases) -> None:
    kw = {"num_train": 1000, "num_eval": 500, "num_variance_estimate": 2000}
    assert factor_vae_score(cases["equal"][0], cases["equal"][1], **kw)["factor_vae_score"] > 0.99
    noise = factor_vae_score(cases["noise"][0], cases["noise"][1], **kw)["factor_vae_score"]
    assert noise < 0.5


def test_factor_vae_score_takes_an_encoder_and_prunes(cases) -> None:
    z, f = cases["equal"]
    calls = []

    def encode(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return np.c_[z[rows], np.zeros(len(rows))]  # a collapsed fifth dimension

    out = factor_vae_score(encode, f, num_train=300, num_eval=200, num_variance_estimate=500,
                           chunk=4096)
    assert out["factor_vae_active_dims"] == 4 and out["factor_vae_score"] > 0.99
    assert max(calls) <= 4096
    same = factor_vae_score(np.c_[z, np.zeros(N)], f, num_train=300, num_eval=200,
                            num_variance_estimate=500, chunk=4096)
    assert same == out  # an array and a callable read the same rows


@pytest.mark.parametrize("metric", [mig, sap, dci])
def test_factor_length_mismatch_is_one_line(cases, metric) -> None:
    z, f = cases["equal"]
    with pytest.raises(VarfamError, match="rows") as e:
        metric(z, f[:-1])
    assert "\n" not in str(e.value)


def test_factor_vae_score_refuses_bad_input(cases) -> None:
    z, f = cases["equal"]
    with pytest.raises(VarfamError, match="one row of factors"):
        factor_vae_score(z[:-1], f)
    with pytest.raises(VarfamError, match="batch of at least 2"):
        factor_vae_score(z, f, batch_size=1)
    with pytest.raises(VarfamError, match="single value"):
        mig(z, np.ones((N, 2)))
