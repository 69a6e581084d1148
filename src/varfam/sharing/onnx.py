"""ONNX graphs of a model's decoder and encoder, to run them where PyTorch is not.

- The **decoder** graph maps latents ``z`` (N, D) to the likelihood's mean image
  ``mean`` (N, *data_shape): pixel probabilities for a Bernoulli, the mean for a
  Gaussian, and so on; the picture :meth:`varfam.VAE.sample` shows.
- The **encoder** graph maps inputs ``x`` (N, *data_shape), scaled as for
  training (floats in [0, 1]), to the family's location ``loc`` (N, D)
  (:meth:`varfam.VAE.encode_location`: the mean of q(z|x) where it exists), the
  embedding used downstream.

Both are exported by ``torch.onnx.export`` (the ``torch.export`` based exporter)
with a dynamic batch dimension named ``batch``, checked by ``onnx.checker``, and
carry the run's shapes in their metadata (``varfam.data_shape``,
``varfam.latent_dim``, ...). A part whose output is random (a likelihood whose
mean is drawn pixel by pixel) cannot be a fixed graph and is refused with a
:class:`VarfamError` that names it; so is any part the exporter cannot trace.

>>> import torch, varfam
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> graph = DecoderGraph(model)          # what export_decoder(model, "decoder.onnx") writes
>>> {name: tuple(t.shape) for name, t in graph.inputs(3).items()}
{'z': (3, 2)}
>>> graph(*graph.inputs(3).values()).shape
torch.Size([3, 1, 8, 8])
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from varfam.errors import VarfamError
from varfam.model import VAE

__all__ = [
    "DecoderGraph",
    "EncoderGraph",
    "export_decoder",
    "export_encoder",
    "onnx_max_difference",
]


class DecoderGraph(nn.Module):
    """What the decoder graph computes: ``z`` (N, D) → the mean of p(x|z), (N, *data_shape).

    :meth:`inputs` names the graph's inputs in order, with random values. A model
    conditioned on labels will add its ``y`` there and in :meth:`forward`
    (``model.decode(z, y)``); the export and the checks read the inputs from there.
    """

    output = "mean"

    def __init__(self, model: VAE) -> None:
        super().__init__()
        self.model = model

    def inputs(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Example inputs for ``n`` examples: z standard normal."""
        return {"z": torch.randn(n, self.model.latent_dim, generator=generator)}

    def forward(self, z: Tensor) -> Tensor:
        return self.model.decode(z).mean

    def parts(self) -> list[tuple[str, Callable[[Tensor], Any]]]:
        """The parts in the order they run, each named for error messages."""
        cfg = self.model.config
        return [
            (f"architecture '{cfg.arch}' (decoder network)", self.model.decoder),
            (f"likelihood '{cfg.likelihood}'", lambda p: self.model.likelihood(p.float()).mean),
        ]


class EncoderGraph(nn.Module):
    """What the encoder graph computes: ``x`` (N, *data_shape) → the family's location (N, D)."""

    output = "loc"

    def __init__(self, model: VAE) -> None:
        super().__init__()
        self.model = model

    def inputs(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Example inputs for ``n`` examples: x uniform in [0, 1]."""
        return {"x": torch.rand(n, *self.model.data_shape, generator=generator)}

    def forward(self, x: Tensor) -> Tensor:
        return self.model.encode_location(x)

    def parts(self) -> list[tuple[str, Callable[[Tensor], Any]]]:
        cfg = self.model.config
        return [
            (f"architecture '{cfg.arch}' (encoder network)", self.model.encoder),
            (f"family '{cfg.family}'", lambda h: self.model.family.location(h.float())),
        ]


class _SeededOps(TorchDispatchMode):
    """Records the random-number operators (tag ``nondeterministic_seeded``) that run."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if torch.Tag.nondeterministic_seeded in func.tags:
            self.seen.append(func.__name__)
        return func(*args, **(kwargs or {}))


def _check_parts(graph: DecoderGraph | EncoderGraph) -> None:
    """Run each part once; refuse one that draws random numbers or has no such output."""
    value: Any = next(iter(graph.inputs(1).values()))
    for name, part in graph.parts():
        try:
            with torch.no_grad(), _SeededOps() as seeded:
                value = part(value)
        except NotImplementedError:
            raise VarfamError(
                f"the {name} cannot be exported to ONNX: it has no {graph.output} to compute"
            ) from None
        if seeded.seen:
            raise VarfamError(
                f"the {name} cannot be exported to ONNX: its {graph.output} draws random "
                f"numbers ({seeded.seen[0].split('.')[0]}), so no fixed graph computes it"
            )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines and warnings (e.g. 'torchvision is not installed') off."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _onnx() -> Any:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx.export needs it)
    except ImportError:
        raise VarfamError("ONNX export needs onnx and onnxscript: pip install 'varfam[onnx]'"
                          ) from None
    return onnx


def _metadata(model: VAE, graph: DecoderGraph | EncoderGraph) -> dict[str, str]:
    from importlib.metadata import version

    __version__ = version("varfam")

    cfg = model.config
    return {
        "varfam.version": __version__,
        "varfam.graph": type(graph).__name__.removesuffix("Graph").lower(),
        "varfam.data_shape": json.dumps(list(model.data_shape)),
        "varfam.latent_dim": str(model.latent_dim),
        "varfam.family": cfg.family,
        "varfam.likelihood": cfg.likelihood,
        "varfam.arch": cfg.arch,
    }


def _export(model: VAE, kind: type[DecoderGraph | EncoderGraph], path: str | Path) -> Path:
    from varfam.runs.checkpoint import atomic_write

    onnx = _onnx()
    if model.config is None:
        raise VarfamError("only models made by VAE.build can be exported (their parts are named)")
    if getattr(model.config, "condition", None):
        raise VarfamError(
            f"the {model.config.condition}-conditioned decoder/encoder cannot be exported to "
            "ONNX yet; export an unconditional model"
        )
    model = copy.deepcopy(model).cpu().float().eval()  # the caller's model stays as it is
    graph = kind(model)
    _check_parts(graph)
    inputs = graph.inputs(2)
    batch = torch.export.Dim("batch")
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                graph, tuple(inputs.values()), input_names=list(inputs),
                output_names=[graph.output], dynamic_shapes=tuple({0: batch} for _ in inputs),
                dynamo=True, verbose=False, external_data=False,
            )
    except Exception as e:  # the exporter's errors have no common base class
        names = " and the ".join(name for name, _ in graph.parts())
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise VarfamError(f"cannot export the {names} to ONNX: {first}") from None
    proto = program.model_proto
    onnx.helper.set_model_props(proto, _metadata(model, graph))
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    atomic_write(path, lambda tmp: onnx.save(proto, tmp))
    return path


def export_decoder(model: VAE, path: str | Path) -> Path:
    """Write the decoder graph ``z`` (N, D) → ``mean`` (N, *data_shape) to ``path``."""
    return _export(model, DecoderGraph, path)


def export_encoder(model: VAE, path: str | Path) -> Path:
    """Write the encoder graph ``x`` (N, *data_shape) → ``loc`` (N, D) to ``path``."""
    return _export(model, EncoderGraph, path)


def onnx_max_difference(model: VAE, path: str | Path, n: int = 4, seed: int = 0) -> float:
    """Largest absolute difference between an exported graph and PyTorch on random inputs.

    Latents are standard normal, inputs uniform in [0, 1]; ``n`` examples.
    Needs ``onnxruntime``.
    """
    try:
        import onnxruntime
    except ImportError:
        raise VarfamError("checking an ONNX graph needs onnxruntime: pip install 'varfam[onnx]'"
                          ) from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    graph = DecoderGraph(model) if meta.get("varfam.graph") == "decoder" else EncoderGraph(model)
    inputs = graph.inputs(n, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        device = model.device
        expected = graph(*(t.to(device) for t in inputs.values())).float().cpu().numpy()
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    return float(abs(got - expected).max())
