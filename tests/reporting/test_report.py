"""The HTML report: every section present, every picture embedded, for any data."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

import varfam
from varfam.cli import main
from varfam.data import Dataset
from varfam.reporting.page import read_metrics, write_report
from varfam.reporting.pictures import manifold_grid, to_latent_support, traversal_grid

SECTIONS = ["Training curves", "Pictures", "Diagnostics", "Anomaly scores", "Configuration"]


class Page(HTMLParser):
    """Collects section headings, image sources and any reference to an outside file."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.images: list[tuple[str, str]] = []
        self.external: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "h2":
            self._in_h2 = True
            self.headings.append("")
        if tag == "img":
            self.images.append((a.get("alt") or "", a.get("src") or ""))
        for key in ("src", "href"):  # links to papers are followed only when clicked
            value = a.get(key)
            if tag not in ("img", "a") and value and not value.startswith("#"):
                self.external.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings[-1] += data


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    return page


def check_page(path: Path, manifold: bool, channels: int) -> Page:
    page = parse(path)
    assert page.headings == SECTIONS
    assert not page.external
    alts = [alt for alt, _ in page.images]
    wanted = ("training curves", "reconstructions", "samples", "interpolations", "traversals",
              "latent map", "variance of latent means", "score histogram")
    for alt in wanted + (("manifold",) if manifold else ()):
        assert alt in alts, alt
    for alt, src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), alt
        img = Image.open(io.BytesIO(base64.b64decode(src[len(prefix):])))
        img.load()
        assert img.width > 10 and img.height > 10
        if alt in ("reconstructions", "samples", "traversals"):
            assert len(img.getbands()) == channels, alt
    return page


@pytest.fixture(scope="module")
def run_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "digits2d"
    assert main(["train", "--data", "digits", "--epochs", "1", "--hidden", "32", "--latent-dim",
                 "2", "--binarize", "dynamic", "--out", str(out), "--quiet"]) == 0
    return out


def test_train_writes_a_complete_report_for_2d_latents(run_2d: Path) -> None:
    page = check_page(run_2d / "report.html", manifold=True, channels=1)
    assert "KL per dimension" in [alt for alt, _ in page.images]
    text = (run_2d / "report.html").read_text()
    for phrase in ("importance sampled", "inference gap", "active units", "probe accuracy",
                   "bits/dim", "mutual information"):
        assert phrase in text, phrase
    _, evals = read_metrics(run_2d)
    assert evals[-1]["source"] == "report" and evals[-1]["iw"] == 100


def test_report_command_without_manifold(digits_run: Path, capsys: pytest.CaptureFixture) -> None:
    _, before = read_metrics(digits_run)
    assert main(["report", str(digits_run), "--iw", "10", "--limit", "80"]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert path == digits_run / "report.html"
    check_page(path, manifold=False, channels=1)
    _, after = read_metrics(digits_run)
    assert len(after) == len(before) + 1
    assert after[-1]["iw"] == 10 and after[-1]["n"] == 80 and after[-1]["limit"] == 80
    assert main(["report", str(digits_run), "--iw", "5", "--limit", "40", "--no-record"]) == 0
    assert len(read_metrics(digits_run)[1]) == len(after)


def test_report_for_an_rgb_run_on_user_data(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(3, 3, 8, 8, generator=g)
    def images(n: int) -> torch.Tensor:
        idx = torch.randint(0, 3, (n,), generator=g)
        return (base[idx] + 0.1 * torch.rand(n, 3, 8, 8, generator=g)).clamp(0, 1)
    data = Dataset("rgb", images(200), images(40), torch.arange(200) % 3, torch.arange(40) % 3)
    torch.manual_seed(0)
    model = varfam.VAE.build(data_shape=(3, 8, 8), hidden=(32,), latent_dim=3)
    varfam.train(model, data, epochs=1, out=tmp_path / "rgb")
    path = write_report(tmp_path / "rgb", data=data, iw=5, limit=30)
    check_page(path, manifold=False, channels=3)
    ev = read_metrics(tmp_path / "rgb")[1][-1]
    assert ev["n"] == 30 and ev["data"] == "rgb" and ev["probe_accuracy"] is not None
    json.dumps(ev, allow_nan=False)


@pytest.mark.parametrize("support", ["real", "sphere", "unit-cube", "simplex"])
def test_traversal_and_manifold_respect_the_latent_support(support: str) -> None:
    model = varfam.VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=2).eval()
    model.family.latent_support = support
    seen = []
    decode = model.decode
    model.decode = lambda z: seen.append(z) or decode(z)  # type: ignore[method-assign]
    base = to_latent_support(torch.tensor([0.3, 0.7]), support)
    assert traversal_grid(model, base, [1, 0], steps=5).shape == (10, 1, 8, 8)
    assert manifold_grid(model, n=4, locations=torch.rand(50, 2)).shape == (16, 1, 8, 8)
    for z in seen:
        if support == "sphere":
            torch.testing.assert_close(z.norm(dim=-1), torch.ones(z.shape[0]))
        elif support == "unit-cube":
            assert float(z.min()) >= 0 and float(z.max()) <= 1
        elif support == "simplex":
            torch.testing.assert_close(z.sum(-1), torch.ones(z.shape[0]))
            assert float(z.min()) >= 0
    if support == "real":  # the traversed dimension runs over -3..3, the other stays at base
        z = seen[0].view(2, 5, 2)
        torch.testing.assert_close(z[0, :, 1], torch.linspace(-3, 3, 5) + 0.7)
        torch.testing.assert_close(z[0, :, 0], torch.full((5,), 0.3))
