"""Data sets of a handful of examples train, draw their pictures and write their report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from varfam import VAE
from varfam.cli import main
from varfam.reporting.pictures import interpolation_grid, pca_2d, write_run_pictures

ARGS = ["--epochs", "1", "--hidden", "16", "--latent-dim", "4", "--quiet"]


def _pictures(run: Path) -> set[str]:
    return {p.name for p in run.glob("*.png")}


def test_a_twelve_image_folder_trains_and_reports(tmp_path: Path) -> None:
    folder = tmp_path / "faces"
    folder.mkdir()
    g = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(g.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--out", str(out), *ARGS]) == 0
    assert (out / "report.html").is_file()
    # one test example: no interpolation (it needs a pair), every other picture
    assert _pictures(out) == {"reconstructions.png", "samples.png", "latent.png"}
    assert "Needs at least two test examples" in (out / "report.html").read_text()


@pytest.mark.parametrize("n", [3, 25])
def test_a_tiny_array_trains_and_reports(tmp_path: Path, n: int) -> None:
    """3 examples keep one for testing, 25 keep two (an interpolation pair)."""
    np.save(tmp_path / "x.npy", np.random.default_rng(n).random((n, 8, 8), dtype=np.float32))
    out = tmp_path / "run"
    report = [] if n < 20 else ["--no-report"]  # the folder test reports on 1 example too
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--out", str(out), *ARGS,
                 *report]) == 0
    assert (out / "report.html").is_file() == (n < 20) and (out / "latent.png").is_file()
    assert (out / "interpolation.png").is_file() == (n >= 20)


@pytest.mark.parametrize("n", [1, 2, 3, 50])
def test_pca_gives_two_coordinates_for_any_number_of_examples(n: int) -> None:
    z = torch.randn(n, 5)
    coords, mean, axes = pca_2d(z)
    assert coords.shape == (n, 2) and axes.shape == (5, 2) and torch.isfinite(coords).all()
    torch.testing.assert_close(coords, ((z.double() - mean.double()) @ axes.double()).float())
    if n > 2:  # two principal axes: orthonormal
        torch.testing.assert_close(axes.T @ axes, torch.eye(2), atol=1e-5, rtol=0)


def test_interpolation_leaves_out_an_odd_last_input_and_needs_two() -> None:
    model = VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=2).eval()
    x = torch.rand(3, 1, 8, 8)
    assert interpolation_grid(model, x, steps=5).shape == (5, 1, 8, 8)
    with pytest.raises(ValueError, match="at least two"):
        interpolation_grid(model, x[:1])


def test_run_pictures_with_one_test_example(tmp_path: Path) -> None:
    model = VAE.build(data_shape=(1, 8, 8), hidden=(16,), latent_dim=3)
    written = write_run_pictures(model, torch.rand(1, 1, 8, 8), torch.tensor([2]), tmp_path)
    assert set(written) == {"reconstructions", "samples", "latent"}
    from PIL import Image

    for name, path in written.items():  # each a real picture with something drawn on it
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("L"), dtype=np.float64)
        assert Path(path).parent == tmp_path and pixels.std() > 0, name
    with Image.open(written["reconstructions"]) as img:  # the one input and its decodes
        assert img.width > img.height >= 8
