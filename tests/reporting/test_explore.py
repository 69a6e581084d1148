"""The latent explorer: its JSON API against the model's own maps, and the page in Chromium.

Two tiny runs on `digits` (latent 2: the map is the latent plane itself; latent 5:
the map is the PCA plane) and one RGB run with a mixture family (no closed-form KL
per dimension, so sliders are ordered by variance). Every image the server or the
page shows is compared pixel for pixel with ``model.decode(z).mean`` of the code it
claims to show.

The browser test drives Debian's Chromium (/usr/bin/chromium, or $VARFAM_CHROMIUM)
with Playwright; it is skipped, with the reason, where either is missing. Set
``VARFAM_EXPLORER_SCREENSHOT=docs/explorer.png`` to keep its screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import varfam
from varfam.cli import main
from varfam.data import load_dataset
from varfam.errors import VarfamError
from varfam.evaluation.bounds import kl_per_dimension_mean
from varfam.reporting.explore import Explorer, make_server, rgba_pixels
from varfam.reporting.pictures import interpolation_grid, latent_map, pca_2d
from varfam.runs.folder import open_run, run_test_data


# ---------------------------------------------------------------- fixtures
def _train(out: Path, data: str, latent_dim: int, **model: Any) -> Path:
    torch.manual_seed(0)
    ds = load_dataset(data)
    net = varfam.VAE.build(data_shape=ds.data_shape, latent_dim=latent_dim, hidden=(48,), **model)
    varfam.train(net, ds, varfam.TrainConfig(epochs=1, batch_size=64), out=out)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("explore")
    rgb = np.random.default_rng(0).integers(0, 256, (60, 3, 6, 5), dtype=np.uint8)
    np.savez(root / "rgb.npz", x=rgb, labels=np.arange(60) % 3)
    return {
        "d2": _train(root / "d2", "digits", 2),
        "d5": _train(root / "d5", "digits", 5),
        "rgb": _train(root / "rgb", str(root / "rgb.npz"), 3, family="mixture"),
        # conditioned on labels: the page's class picker decodes with the chosen class
        "cond": _train(root / "cond", "digits", 3, condition="label", n_classes=10,
                       classes=tuple(str(d) for d in range(10)), prior="conditional"),
    }


@contextmanager
def serving(run: Path) -> Iterator[str]:
    server = make_server(Explorer.from_run(run), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def call(url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            text = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        text, status = e.read(), e.code
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text.decode()


def pixels(image: dict[str, Any]) -> np.ndarray:
    """An API image → (H, W, 4) uint8."""
    flat = np.frombuffer(base64.b64decode(image["rgba"]), np.uint8)
    return flat.reshape(image["height"], image["width"], 4)


@torch.no_grad()
def expected(model: varfam.VAE, z: list[float] | torch.Tensor,
             label: int | None = None) -> np.ndarray:
    """What the page must show for code ``z`` (and class ``label`` of a model conditioned on
    labels): the model's decoded mean, as RGBA."""
    z = torch.as_tensor(z, dtype=torch.float32).reshape(1, -1)
    return rgba_pixels((model.decode(z) if label is None else model.decode(z, label)).mean)[0]


def same_pixels(shown: np.ndarray, want: np.ndarray) -> bool:
    """Equal up to one level of 8-bit rounding (float noise at a .5 boundary)."""
    return shown.shape == want.shape and int(np.abs(shown.astype(int) - want).max()) <= 1


# ---------------------------------------------------------------- the API
@pytest.mark.parametrize("name", ["d2", "d5"])
def test_map_info_and_slider_order_match_the_library(runs: dict[str, Path], name: str) -> None:
    model, cfg = open_run(runs[name])
    x, labels = run_test_data(cfg)
    coords, mean, axes = pca_2d(latent_map(model, x))
    kl = kl_per_dimension_mean(model, x)
    with serving(runs[name]) as url:
        _, info = call(url + "/api/info")
        _, m = call(url + "/api/map")
    assert info["latent_dim"] == model.latent_dim and info["n_test"] == x.shape[0]
    assert info["data_shape"] == [1, 8, 8] and info["image"] == {"width": 8, "height": 8}
    np.testing.assert_allclose(m["coords"], coords.numpy(), atol=1e-5)
    np.testing.assert_allclose(m["mean"], mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(m["axes"], axes.numpy(), atol=1e-6)
    assert m["labels"] == labels.tolist()
    assert [c["value"] for c in m["classes"]] == list(range(10))
    # sliders: every dimension once, by decreasing mean KL, whose values are the library's
    assert info["order_by"] == "kl"
    dims = info["dims"]
    assert sorted(d["index"] for d in dims) == list(range(model.latent_dim))
    got = [d["kl"] for d in dims]
    assert got == sorted(got, reverse=True)
    np.testing.assert_allclose([kl[d["index"]] for d in dims], got, rtol=1e-5)
    assert all(d["low"] < d["high"] for d in dims)
    # the ranges hold every latent mean of the test set
    locs = latent_map(model, x)
    assert all(d["low"] <= float(locs[:, d["index"]].min()) for d in dims)
    assert all(d["high"] >= float(locs[:, d["index"]].max()) for d in dims)
    if name == "d2":  # the map of a 2-D latent space is that space
        np.testing.assert_allclose(m["coords"], locs.numpy(), atol=1e-5)
        assert m["axis_names"] == ["z1", "z2"]


@pytest.mark.parametrize("name", ["d2", "d5"])
def test_decoding_a_map_point_lifts_it_through_the_pca(runs: dict[str, Path], name: str) -> None:
    model, _ = open_run(runs[name])
    with serving(runs[name]) as url:
        _, m = call(url + "/api/map")
        for point in ([0.3, -0.7], [-1.5, 1.2]):
            status, out = call(url + "/api/decode", {"point": point})
            assert status == 200
            lifted = torch.tensor(m["mean"]) + torch.tensor(point) @ torch.tensor(m["axes"]).T
            np.testing.assert_allclose(out["z"], lifted.numpy(), atol=1e-6)
            np.testing.assert_allclose(out["point"], point, atol=1e-5)  # back onto the map
            assert same_pixels(pixels(out["image"]), expected(model, out["z"]))
    assert not np.array_equal(expected(model, [0.0] * model.latent_dim),
                              expected(model, [2.5] * model.latent_dim))


def test_decode_z_sample_example_and_interpolation(runs: dict[str, Path]) -> None:
    model, cfg = open_run(runs["d5"])
    x, labels = run_test_data(cfg)
    with serving(runs["d5"]) as url:
        z = torch.randn(5).tolist()
        _, out = call(url + "/api/decode", {"z": z})
        assert torch.equal(torch.tensor(out["z"]), torch.tensor(z, dtype=torch.float32))
        assert same_pixels(pixels(out["image"]), expected(model, z))

        _, s1 = call(url + "/api/sample", {"seed": 7})
        _, s2 = call(url + "/api/sample", {"seed": 7})
        _, s3 = call(url + "/api/sample", {})
        _, s4 = call(url + "/api/sample", raw=b"")  # an empty body
        torch.manual_seed(7)
        want = model.prior_distribution().sample()
        np.testing.assert_allclose(s1["z"], want.numpy(), atol=1e-6)
        assert s1["z"] == s2["z"] and s1["seed"] == 7
        assert s3["z"] != s4["z"] and s3["seed"] != s4["seed"]
        for s in (s1, s3, s4):
            assert same_pixels(pixels(s["image"]), expected(model, s["z"]))

        _, ex = call(url + "/api/example?index=4")
        loc = latent_map(model, x[4:5])[0]
        np.testing.assert_allclose(ex["z"], loc.numpy(), atol=1e-5)
        assert ex["label"] == int(labels[4])
        assert same_pixels(pixels(ex["input"]), rgba_pixels(x[4:5])[0])
        assert same_pixels(pixels(ex["image"]), expected(model, ex["z"]))

        _, strip = call(url + "/api/interpolate", {"a": 3, "b": 11, "steps": 6})
        grid = rgba_pixels(interpolation_grid(model, x[[3, 11]], steps=6))
        assert len(strip["images"]) == 6
        for shown, want in zip(strip["images"], grid):
            assert same_pixels(pixels(shown), want)
        assert same_pixels(pixels(strip["inputs"][1]), rgba_pixels(x[11:12])[0])
        assert not np.array_equal(grid[0], grid[-1])


def test_bad_requests_get_one_line_errors(runs: dict[str, Path]) -> None:
    with serving(runs["d2"]) as url:
        for path, body, words in [
            ("/api/decode", {"z": [1.0, 2.0, 3.0]}, "list of 2 numbers"),
            ("/api/decode", {"z": [1.0, "a"]}, "list of 2 numbers"),
            ("/api/decode", {}, "either z"),
            ("/api/decode", {"z": [0, 0], "point": [0, 0]}, "either z"),
            ("/api/interpolate", {"a": 0, "b": 10_000}, "index"),
            ("/api/interpolate", {"a": 0, "b": 1, "steps": 1}, "steps"),
            ("/api/sample", {"seed": -1}, "seed"),
            ("/api/decode", [1, 2], "JSON object"),
        ]:
            status, out = call(url + path, body)
            assert status == 400 and words in out["error"] and "\n" not in out["error"], path
        status, out = call(url + "/api/decode", raw=b"{not json")
        assert status == 400 and "not valid JSON" in out["error"]
        assert call(url + "/api/example?index=x")[0] == 400
        assert call(url + "/api/example?index=99999")[0] == 400
        assert call(url + "/api/nothing")[0] == 404
        assert call(url + "/api/nothing", {})[0] == 404
        assert call(url + "/../config.json")[0] == 404
        status, page = call(url + "/")
        assert status == 200 and "varfam explorer" in page and "http" not in page.lower()
        status, script = call(url + "/explorer.js")
        assert status == 200 and "/api/decode" in script and "http://" not in script


def test_rgb_data_and_a_family_without_closed_form_kl(runs: dict[str, Path]) -> None:
    model, cfg = open_run(runs["rgb"])
    x, _ = run_test_data(cfg)
    ex = Explorer.from_run(runs["rgb"])
    info = ex.info()
    assert info["data_shape"] == [3, 6, 5] and info["image"] == {"width": 5, "height": 6}
    assert info["order_by"] == "variance" and info["family"] == "mixture"
    var = latent_map(model, x).double().var(0, unbiased=False)
    assert [d["index"] for d in info["dims"]] == var.argsort(descending=True).tolist()
    out = ex.decode(point=[0.1, 0.2])
    shown = pixels(out["image"])
    mean = model.decode(torch.tensor([out["z"]])).mean[0]  # (3, 6, 5)
    want = torch.floor(mean.clamp(0, 1) * 255 + 0.5).permute(1, 2, 0).to(torch.uint8).numpy()
    assert same_pixels(shown[..., :3], want) and (shown[..., 3] == 255).all()


def test_rgba_layouts() -> None:
    grey = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])  # (1, 1, 2, 2)
    out = rgba_pixels(grey)[0]
    assert out.shape == (2, 2, 4)
    assert out[..., 0].tolist() == [[0, 255], [128, 64]]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 3] == 255).all()
    two = torch.stack([torch.zeros(2, 3), torch.ones(2, 3)])[None]  # (1, 2, 2, 3): tiles
    assert rgba_pixels(two)[0][..., 0].tolist() == [[0, 0, 0, 255, 255, 255]] * 2
    vec = torch.linspace(0, 1, 6)[None]  # (1, 6) vectors: one row
    assert rgba_pixels(vec).shape == (1, 1, 6, 4)
    assert rgba_pixels(torch.full((1, 16), 2.0))[0][..., 0].max() == 255  # clamped


def test_cli_refuses_what_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["explore", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a varfam run" in err and len(err.splitlines()) == 1
    assert main(["explore", str(tmp_path / "missing")]) == 2
    assert main(["explore", str(tmp_path), "--port", "70000"]) == 2


def test_a_port_in_use_is_a_user_error(runs: dict[str, Path]) -> None:
    ex = Explorer.from_run(runs["d2"], limit=20)
    assert ex.info()["n_test"] == 20
    first = make_server(ex, port=0)
    try:
        with pytest.raises(VarfamError, match="in use"):
            make_server(ex, port=first.server_address[1])
    finally:
        first.server_close()


# ---------------------------------------------------------------- the page, in Chromium
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str:
    path = os.environ.get("VARFAM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        pytest.skip(f"Chromium not found at {path} (apt-get install chromium, "
                    "or set VARFAM_CHROMIUM to its path)")
    return path


def _settled(page) -> None:
    page.wait_for_function("() => { const s = window.varfamExplorer;"
                           " return s && s.ready && !s.inFlight && !s.pending; }")


def _shown(page, selector: str) -> np.ndarray:
    """The pixels of a canvas on the page, (H, W, 4) uint8."""
    data = page.evaluate(
        """(sel) => { const c = document.querySelector(sel);
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
             return {w: c.width, h: c.height, px: Array.from(d.data)}; }""",
        selector,
    )
    return np.array(data["px"], np.uint8).reshape(data["h"], data["w"], 4)


def _act(page, action) -> list[float]:
    """Do ``action``, wait until the page has shown its answer, return the code it shows."""
    before = page.evaluate("window.varfamExplorer.version")
    action()
    page.wait_for_function(f"window.varfamExplorer.version > {before}")
    _settled(page)
    return page.evaluate("window.varfamExplorer.z")


def _check_shows(page, model: varfam.VAE, z: list[float], label: int | None = None) -> None:
    assert same_pixels(_shown(page, "#decoded"), expected(model, z, label))


@contextmanager
def explorer_page(run: Path) -> Iterator[Any]:
    """The explorer page of ``run`` in Chromium, loaded and settled; no page error or console
    error may happen while it is open. Skips where Chromium or Playwright is missing."""
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright not installed (pip install playwright)")
    problems: list[str] = []
    with serving(run) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 980})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(url + "/")
            _settled(page)
            yield page
        finally:
            browser.close()
    assert not problems, problems


def test_page_in_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    model, cfg = open_run(runs["d5"])
    x, _ = run_test_data(cfg)
    with explorer_page(runs["d5"]) as page:
        info, m = page.evaluate("[window.varfamExplorer.info, window.varfamExplorer.map]")
        mean, m_axes = torch.tensor(m["mean"]), torch.tensor(m["axes"])
        assert page.locator("#legend span.swatch").count() == 10
        assert page.locator("#sliders input[type=range]").count() == 5
        z0 = page.evaluate("window.varfamExplorer.z")
        np.testing.assert_allclose(z0, info["start"], atol=1e-6)
        _check_shows(page, model, z0)

        # a click on the map decodes that point, lifted back through the PCA
        mapbox = page.locator("#map")
        z1 = _act(page, lambda: mapbox.click(position={"x": 150, "y": 130}))
        assert z1 != z0
        residual = (torch.tensor(z1) - mean) - (torch.tensor(z1) - mean) @ m_axes @ m_axes.T
        assert float(residual.abs().max()) < 1e-4  # on the map's plane
        _check_shows(page, model, z1)

        # dragging keeps decoding; the last position wins
        box = mapbox.bounding_box()

        def drag() -> None:
            page.mouse.move(box["x"] + 200, box["y"] + 300)
            page.mouse.down()
            for k in range(1, 9):
                page.mouse.move(box["x"] + 200 + 20 * k, box["y"] + 300 - 15 * k)
            page.mouse.up()

        z2 = _act(page, drag)
        assert z2 != z1
        _check_shows(page, model, z2)

        # the first slider (largest KL) edits one coordinate of the code
        top = info["dims"][0]["index"]
        slider = page.locator(f"#z{top}")

        def nudge() -> None:
            slider.focus()
            for _ in range(25):
                page.keyboard.press("ArrowRight")

        z3 = _act(page, nudge)
        changed = [d for d in range(5) if abs(z3[d] - z2[d]) > 1e-6]
        assert changed == [top] and z3[top] > z2[top]
        _check_shows(page, model, z3)

        # a draw from the prior
        z4 = _act(page, lambda: page.click("#sample"))
        assert z4 != z3
        _check_shows(page, model, z4)
        assert "prior draw" in page.inner_text("#decoded-caption")

        # the interpolation strip between test examples 3 and 11
        page.fill("#interp-a", "3")
        page.fill("#interp-b", "11")
        page.fill("#interp-steps", "7")
        page.click("#interpolate")
        page.wait_for_function("window.varfamExplorer.interpolations >= 1")
        grid = rgba_pixels(interpolation_grid(model, x[[3, 11]], steps=7))
        steps = page.locator("#strip canvas.step")
        assert steps.count() == 7
        for k in range(7):
            assert same_pixels(_shown(page, f"#strip figure:nth-child({k + 2}) canvas"),
                               grid[k])
        assert page.evaluate("window.varfamExplorer.error") is None

        shot = tmp_path / "explorer.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        keep = os.environ.get("VARFAM_EXPLORER_SCREENSHOT")
        if keep:
            shutil.copyfile(shot, keep)


# ---------------------------------------------------------------- a run conditioned on labels
def test_a_conditioned_run_decodes_with_the_class_asked_for(runs: dict[str, Path]) -> None:
    model, cfg = open_run(runs["cond"])
    x, labels = run_test_data(cfg)
    first = int(labels[0])
    with serving(runs["cond"]) as url:
        _, info = call(url + "/api/info")
        _, m = call(url + "/api/map")
        assert info["condition"] == {"classes": [str(d) for d in range(10)], "label": first}
        # test examples are placed on the map with their own labels
        coords, _, _ = pca_2d(latent_map(model, x, y=labels))
        np.testing.assert_allclose(m["coords"], coords.numpy(), atol=1e-5)
        z = [0.4, -0.3, 1.1]
        shown = {}
        for label in (3, "7", None):
            status, out = call(url + "/api/decode", {"z": z, "label": label})
            assert status == 200 and out["label"] == (first if label is None else int(label))
            assert same_pixels(pixels(out["image"]), expected(model, z, out["label"]))
            shown[out["label"]] = pixels(out["image"])
        assert not np.array_equal(shown[3], shown[7])
        _, s = call(url + "/api/sample", {"seed": 5, "label": 2})
        torch.manual_seed(5)
        want = model.prior_distribution([2]).sample().reshape(-1)
        np.testing.assert_allclose(s["z"], want.numpy(), atol=1e-6)
        assert same_pixels(pixels(s["image"]), expected(model, s["z"], 2))
        _, ex = call(url + "/api/example?index=6")
        assert ex["label"] == int(labels[6])
        assert same_pixels(pixels(ex["image"]), expected(model, ex["z"], int(labels[6])))
        _, strip = call(url + "/api/interpolate", {"a": 1, "b": 2, "steps": 5})
        grid = rgba_pixels(interpolation_grid(model, x[[1, 2]], steps=5, y=labels[[1, 2]]))
        assert all(same_pixels(pixels(a), b) for a, b in zip(strip["images"], grid))
        status, out = call(url + "/api/decode", {"z": z, "label": "cat"})
        assert status == 400 and "unknown label 'cat'" in out["error"]
    with serving(runs["d2"]) as url:
        status, out = call(url + "/api/decode", {"z": [0, 0], "label": 1})
        assert status == 400 and "not conditioned on labels" in out["error"]


def test_the_class_picker_in_chromium(runs: dict[str, Path]) -> None:
    model, cfg = open_run(runs["cond"])
    _, labels = run_test_data(cfg)
    with explorer_page(runs["cond"]) as page:
        picker = page.locator("#class-picker")
        assert picker.is_visible() and picker.locator("option").count() == 10
        assert picker.input_value() == str(int(labels[0]))
        z0 = page.evaluate("window.varfamExplorer.z")
        _check_shows(page, model, z0, int(labels[0]))
        # choosing a class decodes the same code with it
        pick = (int(labels[0]) + 3) % 10
        z1 = _act(page, lambda: picker.select_option(str(pick)))
        assert z1 == z0 and page.evaluate("window.varfamExplorer.label") == pick
        _check_shows(page, model, z1, pick)
        assert f"class {pick}" in page.inner_text("#decoded-caption")
        # a point of the map is decoded with the chosen class
        z2 = _act(page, lambda: page.locator("#map").click(position={"x": 160, "y": 140}))
        assert z2 != z1
        _check_shows(page, model, z2, pick)
        # a prior draw of that class
        z3 = _act(page, lambda: page.click("#sample"))
        _check_shows(page, model, z3, pick)
        # a test example is decoded with its own label, and the picker follows it
        page.fill("#example-index", "6")
        z4 = _act(page, lambda: page.click("#goto"))
        _check_shows(page, model, z4, int(labels[6]))
        assert picker.input_value() == str(int(labels[6]))
        assert page.evaluate("window.varfamExplorer.error") is None
