"""ONNX export: the graphs onnxruntime runs agree with PyTorch, for every architecture and the
diagonal, iaf and vmf families; parts that cannot be a fixed graph are refused by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import varfam
from varfam.cli import main
from varfam.errors import VarfamError
from varfam.runs.checkpoint import save_model
from varfam.sharing.onnx import DecoderGraph, EncoderGraph, export_decoder, export_encoder

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")


def run_graph(path, inputs: dict[str, torch.Tensor]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]


def trained_looking(model: varfam.VAE) -> varfam.VAE:
    """Weights away from their initial values (biases are zero at first), deterministically."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


CASES = [("mlp", "diagonal"), ("gated-mlp", "iaf"), ("conv", "vmf")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """Each architecture with one of the families, exported once: arch → (model, dec, enc)."""
    out = {}
    for arch, family in CASES:
        torch.manual_seed(0)
        model = trained_looking(varfam.VAE.build(
            data_shape=(1, 8, 8), latent_dim=3, hidden=(16,), arch=arch, family=family))
        folder = tmp_path_factory.mktemp(arch)
        out[arch] = (model, export_decoder(model, folder / "decoder.onnx"),
                     export_encoder(model, folder / "encoder.onnx"))
    return out


@pytest.mark.parametrize("arch, family", CASES)
def test_graphs_match_pytorch(arch, family, exported):
    model, decoder, encoder = exported[arch]
    onnx.checker.check_model(str(decoder))
    for path, graph in ((decoder, DecoderGraph(model)), (encoder, EncoderGraph(model))):
        for n in (1, 5):  # the batch dimension is dynamic
            inputs = graph.inputs(n, torch.Generator().manual_seed(n))
            with torch.no_grad():
                expected = graph(*inputs.values()).numpy()
            got = run_graph(path, inputs)
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() <= 1e-4
    z = torch.randn(4, 3)
    with torch.no_grad():  # the decoder graph is the picture model.sample shows
        assert np.allclose(run_graph(decoder, {"z": z}), model.decode(z).mean.numpy(), atol=1e-4)
    if family == "vmf":  # locations on the sphere stay there
        loc = run_graph(encoder, {"x": torch.rand(3, 1, 8, 8)})
        assert np.allclose(np.linalg.norm(loc, axis=1), 1, atol=1e-5)
    meta = {p.key: p.value for p in onnx.load(str(encoder)).metadata_props}
    assert meta["varfam.latent_dim"] == "3" and meta["varfam.family"] == family
    assert meta["varfam.data_shape"] == "[1, 8, 8]"


def test_parts_that_draw_random_numbers_are_refused(tmp_path):
    model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(8,),
                             likelihood="autoregressive-bernoulli")
    with pytest.raises(VarfamError, match="likelihood 'autoregressive-bernoulli' cannot be "
                                          "exported to ONNX"):
        export_decoder(model, tmp_path / "decoder.onnx")
    assert not (tmp_path / "decoder.onnx").exists()


def test_export_command(tmp_path, capsys):
    model = trained_looking(varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(8,),
                                             likelihood="autoregressive-bernoulli"))
    save_model(model, tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--encoder", str(tmp_path / "e.onnx")]) == 0
    out = capsys.readouterr().out
    assert "e.onnx: x (N, 1, 8, 8) → loc (N, 2); onnxruntime matches PyTorch within" in out
    assert main(["export", str(tmp_path / "run"), "--decoder", str(tmp_path / "d.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "likelihood 'autoregressive-bernoulli'" in err
    assert main(["export", str(tmp_path / "run")]) == 2
    assert "give --decoder" in capsys.readouterr().err


def readme_example() -> str:
    """The documented onnxruntime example (README or the sharing guide), as written there."""
    root = Path(__file__).resolve().parents[2]
    for page in (root / "README.md", *sorted((root / "docs").glob("*.md"))):
        text = page.read_text()
        if "## ONNX: use the decoder anywhere" in text:
            section = text[text.index("## ONNX: use the decoder anywhere"):]
            blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
            return next(b for b in blocks if "import onnxruntime" in b)
    raise AssertionError("no page has the section 'ONNX: use the decoder anywhere'")


def test_decoding_without_torch(exported):
    """The README's onnxruntime example, run beside the exported graphs by a process that
    never imports torch."""
    _, decoder, _ = exported["mlp"]
    code = readme_example() + (
        "import sys\nassert 'torch' not in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd=decoder.parent, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(16, 1, 8, 8) (16, 3)"  # the page's own print
