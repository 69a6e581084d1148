"""The page's sections from the other issues: samples per fitted sampler and their quality
(27), anomaly scores with another data set's ROC and AUROC (28), the latent × factor
mutual information on data with known factors (30); the verdicts and the classifier's
confusion matrix; the report command's new options and their one-line refusals."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import varfam
from varfam.cli import main
from varfam.data import Dataset, load_data
from varfam.reporting.diagnostics import confusion_picture
from varfam.reporting.headline import headline_stats, verdicts
from varfam.reporting.page import append_eval_line, write_report
from varfam.reporting.scoring import auroc, page_scores
from varfam.runs.folder import open_run, run_dataset, run_eval_data
from varfam.runs.metrics import read_metrics
from varfam.samplers import fitted_sampler


def _sections(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', page)


@pytest.fixture(scope="module")
def run(picture_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sections") / "run"
    shutil.copytree(picture_run, out)
    return out


def test_samples_per_sampler_and_their_quality(run: Path) -> None:
    model, cfg = open_run(run)
    fitted_sampler(run, model, "gmm", run_dataset(cfg).train, options={"components": 2})
    for sampler, fd in (("floor", 1.0), ("prior", 30.0), ("gmm", 20.0)):
        append_eval_line(run, {"fd": fd, "kid": fd / 1e3, "kid_std": 1e-4, "precision": 0.3,
                               "recall": 0.2, "n": 60, "n_reference": 540},
                         source="samples", sampler=sampler, features="a test network")
    page = write_report(run, iw=5, limit=60, record=False).read_text()
    assert "samplers" in _sections(page)
    samplers = page[page.index('<section id="samplers">'):]
    samplers = samplers[: samplers.index("</section>")]
    assert 'data-picture="samples-per-sampler"' in samplers
    rows = [r for r in re.findall(r"<tr>(.*?)</tr>", samplers) if "<td" in r]
    assert [re.findall(r"<td[^>]*>(.*?)</td>", r)[0] for r in rows] == \
        ["test vs train (floor)", "prior", "gmm"]
    assert 'class="num best">20.000' in samplers  # the best FD of the samplers, not the floor
    assert "not the Inception FIDs" in samplers and "a test network" in samplers


def test_scores_and_another_data_sets_roc(run: Path, tmp_path: Path) -> None:
    noise = (np.random.default_rng(0).random((40, 8, 8)) < 0.5).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    assert main(["report", str(run), "--iw", "5", "--limit", "60", "--score-k", "4",
                 "--ood-data", str(tmp_path / "noise.npy")]) == 0
    line = read_metrics(run)[1][-1]
    assert line["score_method"] == "nll" and line["score_k"] == 4
    assert line["ood_data"] == str(tmp_path / "noise.npy")
    # the AUROC recorded is the one of the scores, computed again
    model, cfg = open_run(run)
    ds = run_eval_data(cfg)
    other = run_eval_data(cfg, str(tmp_path / "noise.npy"))
    s = page_scores(model, ds.test[:60], None, k=4, other=("noise", other.test, None))
    assert line["ood_auroc"] == pytest.approx(auroc(s.test, s.other))
    assert line["ood_auroc"] > 0.9  # noise is far from digits
    page = (run / "report.html").read_text()
    assert 'data-picture="score-histogram"' in page and 'data-picture="roc"' in page
    assert f"<b>{line['ood_auroc']:.3f}</b>" in page


def test_report_refusals(run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(run), "--score", "nope"]) == 2
    assert "unknown score 'nope'" in capsys.readouterr().err
    assert main(["report", str(run), "--score", "none", "--ood-data", "digits"]) == 2
    err = capsys.readouterr().err
    assert "--ood-data" in err and len(err.strip().splitlines()) == 1
    assert main(["report", str(run), "--iw", "2", "--limit", "30", "--score", "none",
                 "--no-record"]) == 0
    assert "scores" not in _sections((run / "report.html").read_text())


def _squares(n_rep: int = 4) -> Dataset:
    """8×8 images of one square: its column, row and size are the factors."""
    rows, factors = [], []
    for _ in range(n_rep):
        for px in range(6):
            for py in range(6):
                for size in (2, 3):
                    img = torch.zeros(1, 8, 8)
                    img[0, py:py + size, px:px + size] = 1
                    rows.append(img)
                    factors.append((px, py, size))
    x, f = torch.stack(rows), torch.tensor(factors, dtype=torch.float32)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, f = x[order], f[order]
    cut = len(x) * 4 // 5
    return Dataset("squares", x[:cut], x[cut:], train_factors=f[:cut], test_factors=f[cut:],
                   factor_names=("pos_x", "pos_y", "size"))


def test_the_mutual_information_of_latents_and_factors(tmp_path: Path) -> None:
    data = _squares()
    torch.manual_seed(0)
    model = varfam.VAE.for_data(data, hidden=(32,), latent_dim=3)
    varfam.train(model, data, epochs=2, batch_size=32, out=tmp_path / "run")
    append_eval_line(tmp_path / "run", {"mig": 0.125, "mig_pos_x": 0.2, "dci_disentanglement":
                                        0.3, "sap": 0.05, "factor_vae_score": 0.5,
                                        "factor_rows": 288, "factor_train": 200,
                                        "factor_test": 88}, source="factors", data="squares")
    page = write_report(tmp_path / "run", data=data, iw=5, limit=None).read_text()
    assert "disentanglement" in _sections(page)
    part = page[page.index('<section id="disentanglement">'):]
    assert 'data-picture="mutual-information"' in part
    assert "ordered by KL" in part and "0.125" in part and "MIG of pos_x" in part


def test_verdicts() -> None:
    m = {"active_units": 2, "latent_dim": 20}
    rising = [{"epoch": 1, "test_elbo": -90.0}, {"epoch": 2, "test_elbo": -85.0}]
    lines = verdicts(m, rising)
    assert lines[0].startswith("posterior collapse: 2 of 20")
    assert "still rising" in lines[1]
    falling = [{"epoch": e, "test_elbo": v, "validation_elbo": v}
               for e, v in ((1, -90.0), (2, -80.0), (3, -84.0))]
    (line,) = verdicts({"active_units": 15, "latent_dim": 20}, falling)
    assert "peaked at epoch 2" in line and "overfitting" in line
    assert verdicts({"active_units": 15, "latent_dim": 20}, []) == []


def test_headline_numbers_of_a_conditioned_run() -> None:
    stats = {s.key: s for s in headline_stats({
        "elbo": -80.0, "elbo_se": 0.5, "n": 100, "conditional": True, "iw": 10,
        "log_likelihood": -78.0, "log_likelihood_se": 0.4, "marginal_log_likelihood": -80.5,
        "accuracy": 0.925, "active_units": 5, "latent_dim": 8, "log_likelihood_bpd": 0.2})}
    assert stats["log-likelihood"].label == "log p(x|y) (nats)"
    assert stats["log-likelihood"].value == "-78.00 ± 0.40"
    assert stats["accuracy"].value == "92.5 %" and stats["active-units"].value == "5 of 8"
    assert "marginal-log-likelihood" in stats and stats["bits-per-dim"].value == "0.200"


def test_the_confusion_matrix() -> None:
    model = varfam.VAE.build(data_shape=(1, 4, 4), latent_dim=2, hidden=(8,),
                             condition="label", n_classes=3, classifier=True,
                             classes=("a", "b", "c"))
    x, y = torch.rand(30, 1, 4, 4).round(), torch.arange(30) % 3
    y[0] = -1  # a hidden label is left out
    p = confusion_picture(model, x, y)
    assert p.image is not None and len(p.png()) > 1000
    assert "for 29 labelled test examples" in p.note


def test_data_with_factors_reaches_the_page_from_the_run_folder(tmp_path: Path) -> None:
    """run_eval_data keeps a data set's factors, so the report of a saved run finds them."""
    data = _squares(2)
    np.savez(tmp_path / "squares.npz", x=torch.cat([data.train, data.test]).numpy(),
             factors=torch.cat([data.train_factors, data.test_factors]).numpy(),
             factor_names=np.array(data.factor_names))
    config = varfam.DataConfig(source=str(tmp_path / "squares.npz"))
    loaded = load_data(config)
    model = varfam.VAE.for_data(loaded, hidden=(8,), latent_dim=2)
    varfam.train(model, loaded, epochs=1, out=tmp_path / "run")
    _, cfg = open_run(tmp_path / "run")
    ds = run_eval_data(cfg)
    assert ds.test_factors is not None and ds.test_factors.shape == (len(ds.test), 3)
    assert ds.factor_names == ("pos_x", "pos_y", "size")
