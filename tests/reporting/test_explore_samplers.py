"""The explorer's sampler picker (issue 27): a draw comes from the prior or from a sampler
fitted in RUN/samplers/, through the API and in Chromium; the image shown is the
model's decode of the code drawn."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from _pages import CHROMIUM_ARGS, chromium

from varfam.errors import VarfamError
from varfam.reporting.explore import Explorer, make_server, rgba_pixels
from varfam.runs.folder import open_run, run_dataset
from varfam.samplers import fitted_sampler, load_sampler


@pytest.fixture(scope="module")
def run(picture_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the picture run with a 2-component GMM fitted in RUN/samplers/."""
    out = tmp_path_factory.mktemp("explore-samplers") / "run"
    shutil.copytree(picture_run, out)
    model, cfg = open_run(out)
    fitted_sampler(out, model, "gmm", run_dataset(cfg).train, options={"components": 2})
    return out


@contextmanager
def serving(explorer: Explorer) -> Iterator[str]:
    server = make_server(explorer, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url.rstrip("/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@torch.no_grad()
def decoded(model, z: list[float]) -> np.ndarray:
    return rgba_pixels(model.decode(torch.tensor([z])).mean)[0]


def test_the_api_draws_from_the_sampler_asked_for(run: Path) -> None:
    ex = Explorer.from_run(run)
    assert ex.info()["samplers"] == ["prior", "gmm"]
    gmm = load_sampler(run / "samplers" / "gmm", ex.model)
    answer = ex.sample(seed=7, sampler="gmm")
    with ex.model.evaluating(7):
        want = gmm.sample(1).reshape(-1)
    np.testing.assert_allclose(answer["z"], want.tolist(), atol=1e-6)
    assert answer["sampler"] == "gmm" and answer["seed"] == 7
    prior = ex.sample(seed=7)
    assert prior["sampler"] == "prior" and prior["z"] != answer["z"]
    with pytest.raises(VarfamError, match="sampler must be one of prior, gmm"):
        ex.sample(seed=7, sampler="flow")
    with serving(ex) as url:
        request = urllib.request.Request(url + "/api/sample", method="POST",
                                         data=json.dumps({"sampler": "nope"}).encode())
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(request, timeout=30)
        assert e.value.code == 400
        assert json.loads(e.value.read())["error"].startswith("sampler must be one of")


@pytest.mark.slow  # kept out of make test's 4-minute budget
def test_the_picker_in_chromium(run: Path) -> None:
    executable = chromium()
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright not installed (pip install playwright)")
    ex = Explorer.from_run(run)
    problems: list[str] = []
    with serving(ex) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 900})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(url + "/")
            page.wait_for_function("() => { const s = window.varfamExplorer;"
                                   " return s && s.ready && !s.inFlight && !s.pending; }")
            options = page.eval_on_selector_all("#sampler-picker option",
                                                "o => o.map(x => x.value)")
            assert options == ["prior", "gmm"]
            page.select_option("#sampler-picker", "gmm")
            before = page.evaluate("window.varfamExplorer.version")
            page.click("#sample")
            page.wait_for_function(f"window.varfamExplorer.version > {before}")
            assert "gmm sampler draw" in page.inner_text("#decoded-caption")
            z = page.evaluate("window.varfamExplorer.z")
            shown = page.evaluate("""() => { const c = document.querySelector('#decoded');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
                return {w: c.width, h: c.height, px: Array.from(d.data)}; }""")
            pixels = np.array(shown["px"], np.uint8).reshape(shown["h"], shown["w"], 4)
            want = decoded(ex.model, z)
            assert pixels.shape == want.shape
            assert int(np.abs(pixels.astype(int) - want).max()) <= 1
        finally:
            browser.close()
    assert not problems, problems
