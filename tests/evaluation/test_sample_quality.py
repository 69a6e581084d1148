"""Sample quality: FD, KID, precision/recall against known answers, and the feature network."""

from __future__ import annotations

import itertools

import pytest
import torch

from varfam.errors import VarfamError
from varfam.evaluation.features import FeatureNet, data_key, feature_extractor
from varfam.evaluation.sample_quality import (
    fd,
    frechet_distance,
    kid,
    measure_samples,
    precision_recall,
    sample_quality,
)

F64 = torch.float64


def _random_covariance(dim: int, seed: int) -> torch.Tensor:
    a = torch.randn(dim, dim, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=F64)


def test_closed_form_matches_the_textbook_formula() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    mu1, mu2 = torch.randn(5, dtype=F64), torch.randn(5, dtype=F64)
    s1, s2 = _random_covariance(5, 1), _random_covariance(5, 2)
    root = torch.from_numpy(scipy_linalg.sqrtm((s1 @ s2).numpy()).real)
    textbook = (mu1 - mu2).square().sum() + torch.trace(s1 + s2 - 2 * root)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(float(textbook), rel=1e-9)
    # commuting (diagonal) covariances: |mu1 - mu2|^2 + sum (sqrt a - sqrt b)^2
    a, b = torch.tensor([1.0, 4.0, 9.0], dtype=F64), torch.tensor([4.0, 1.0, 1.0], dtype=F64)
    expected = 3.0 + ((a.sqrt() - b.sqrt()) ** 2).sum()
    assert frechet_distance(torch.zeros(3), a.diag(), torch.ones(3), b.diag()) == pytest.approx(
        float(expected))
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


def test_fd_of_samples_is_near_zero_for_one_gaussian_and_near_the_closed_form_for_two() -> None:
    g = torch.Generator().manual_seed(0)
    mu1, s1 = torch.zeros(4, dtype=F64), _random_covariance(4, 3)
    mu2, s2 = torch.full((4,), 0.5, dtype=F64), _random_covariance(4, 4)
    l1, l2 = torch.linalg.cholesky(s1), torch.linalg.cholesky(s2)
    a = mu1 + torch.randn(40_000, 4, dtype=F64, generator=g) @ l1.T
    b = mu1 + torch.randn(40_000, 4, dtype=F64, generator=g) @ l1.T
    c = mu2 + torch.randn(40_000, 4, dtype=F64, generator=g) @ l2.T
    assert fd(a, b) < 0.005
    exact = frechet_distance(mu1, s1, mu2, s2)
    assert exact > 1.0
    assert fd(a, c) == pytest.approx(exact, rel=0.03)


def test_kid_is_unbiased_and_matches_a_brute_force_sum() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 3, dtype=F64, generator=g), torch.randn(6, 3, dtype=F64, generator=g) + 1

    def k(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a @ b / 3 + 1) ** 3)

    m = 6
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    mean, std = kid(x, y, subsets=3, subset_size=6)  # whole sets, so every subset is the same
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-12) and std == pytest.approx(0, abs=1e-9)
    # same distribution: the unbiased estimate averages to 0 (within its own spread)
    same = [kid(torch.randn(200, 3, dtype=F64, generator=g),
                torch.randn(200, 3, dtype=F64, generator=g), subsets=1)[0] for _ in range(40)]
    spread = torch.tensor(same).std() / len(same) ** 0.5
    assert abs(sum(same) / len(same)) < 3 * spread
    assert kid(x.repeat(30, 1) + torch.randn(180, 3, dtype=F64, generator=g),
               y.repeat(30, 1) + torch.randn(180, 3, dtype=F64, generator=g))[0] > 0.1


def test_precision_and_recall() -> None:
    g = torch.Generator().manual_seed(2)
    real = torch.randn(400, 5, generator=g)
    assert precision_recall(real, real.clone(), k=3) == (1.0, 1.0)
    assert precision_recall(real, real + 100, k=3) == (0.0, 0.0)
    # half the samples on the data, half far away: precision 1/2; every real point covered
    half = torch.cat([real[:200], real[:200] + 100])
    precision, recall = precision_recall(real, half, k=3)
    assert precision == pytest.approx(0.5)
    assert recall > 0.9
    # samples collapsed on a few real points: precise, but they miss most of the data
    collapsed = real[:5].repeat(80, 1)
    precision, recall = precision_recall(real, collapsed, k=3)
    assert precision == 1.0 and recall < 0.2
    with pytest.raises(VarfamError):
        precision_recall(real, real[:3], k=3)


def test_sample_quality_of_identical_sets() -> None:
    a = torch.randn(300, 4, dtype=F64)
    q = sample_quality(a, a)
    assert q.fd == pytest.approx(0, abs=1e-9) and (q.precision, q.recall) == (1.0, 1.0)
    # the same rows, not independent draws: the cross term keeps k(x_i, x_i), so KID < 0
    assert q.kid < 0 and q.n == q.n_reference == 300
    assert set(q.as_record()) == {"fd", "kid", "kid_std", "precision", "recall", "n",
                                  "n_reference"}


@pytest.fixture(scope="module")
def digits():
    from varfam.data import load_dataset

    return load_dataset("digits")


def test_feature_network_is_trained_once_and_cached(tmp_path, digits) -> None:
    first = feature_extractor(digits.train, digits.train_labels, test=digits.test,
                              test_labels=digits.test_labels, steps=60, cache=tmp_path)
    assert first.kind == "classifier" and first.accuracy > 0.75  # 60 steps only
    assert "trained on the data's labels" in first.description
    cached = list((tmp_path / "features").glob("*.safetensors"))
    assert len(cached) == 1 and cached[0].stem == first.key
    again = feature_extractor(digits.train, digits.train_labels, steps=60, cache=tmp_path)
    assert again.accuracy == first.accuracy  # read back, not trained again
    assert torch.equal(again(digits.test[:50]), first(digits.test[:50]))
    assert first(digits.test[:7]).shape == (7, 64)
    # no labels: random features of a fixed seed, said so
    unlabelled = feature_extractor(digits.train, None, cache=tmp_path)
    assert unlabelled.kind == "random" and "no labels" in unlabelled.description
    assert torch.equal(unlabelled(digits.test[:5]),
                       feature_extractor(digits.train, None)(digits.test[:5]))
    # the key follows the data and the labels
    assert data_key(digits.train, digits.train_labels) != data_key(digits.train[1:], None)
    with pytest.raises(VarfamError):
        first(torch.rand(3, 1, 9, 9))


def test_measure_samples_gives_each_sampler_and_the_floor(tmp_path, digits) -> None:
    from varfam.model import VAE
    from varfam.samplers import fitted_sampler

    model = VAE.build(data_shape=(1, 8, 8), latent_dim=3, hidden=(32,)).eval()
    features = feature_extractor(digits.train, None)
    samplers = {name: fitted_sampler(tmp_path, model, name, digits.train,
                                     options={"components": 3} if name == "gmm" else None)
                for name in ("prior", "gmm")}
    out = measure_samples(model, samplers, features, digits.train, digits.test, n=200)
    assert list(out) == ["floor", "prior", "gmm"]
    assert out["floor"].n == 300 and out["prior"].n == 200
    assert out["floor"].n_reference == len(digits.train)
    # an untrained decoder's grey blobs are far from digits; the test set is close
    assert out["floor"].fd < out["prior"].fd and out["floor"].precision > out["prior"].precision
    with pytest.raises(VarfamError):
        measure_samples(model, samplers, features, digits.train, digits.test, n=0)


def test_feature_net_shapes() -> None:
    assert FeatureNet((3, 28, 28), 10)(torch.rand(2, 3, 28, 28)).shape == (2, 10)
    assert FeatureNet((12,), 4).features(torch.rand(5, 12)).shape == (5, 64)
