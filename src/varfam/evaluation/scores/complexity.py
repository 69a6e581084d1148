"""``complexity``: ``-log p(x)`` corrected by the input's complexity, after Serrà et al. 2020.

``complexity(x) = -log p(x) - L(x)``, where ``L(x)`` is the length of ``x`` compressed
by a lossless general-purpose compressor, in nats (``8 ln 2`` per byte). The
compressor stands for a universal model of images: an input that is simple (a digit
on a black background) gets a short code *and* a high likelihood, and the difference
removes that shared simplicity, leaving how much better the model explains x than a
generic model would (Serrà, Álvarez, Gómez, Slizovskaia, Núñez & Luque 2020, "Input
Complexity and Out-of-distribution Detection with Likelihood-based Generative
Models"). The paper measures both terms in bits with a discrete likelihood; here both
are in nats. With a density likelihood (Gaussian) ``-log p(x)`` is not a code length,
and the correction only shifts it per row by the image's complexity.

Compressors (option ``compressor``): ``"png"`` (default; Pillow at compression level 9,
for images of 1 or 3 channels, otherwise zlib) or ``"zlib"`` (level 9 over the raw
8-bit values). Values in [0, 1] are quantized to 8 bits (``round(255 x)``) first;
missing values (NaN) are coded as 0. Images only: a table has no such generic model.

>>> import torch
>>> flat, noise = torch.zeros(1, 1, 28, 28), torch.rand(1, 1, 28, 28)
>>> bool(code_length(flat) < code_length(noise))
True
"""

from __future__ import annotations

import io
import math
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from varfam.errors import VarfamError
from varfam.evaluation.scores.base import Score, check_positive
from varfam.evaluation.scores.nll import log_likelihood
from varfam.registry import SCORES

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = ["InputComplexity", "code_length", "COMPRESSORS"]

COMPRESSORS = ("png", "zlib")
_NATS_PER_BYTE = 8 * math.log(2)


def _png_bytes(image: np.ndarray) -> int:
    from PIL import Image

    mode = "L" if image.shape[0] == 1 else "RGB"
    pixels = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode=mode).save(buf, format="PNG",
                                                                  compress_level=9)
    return buf.tell()


def code_length(x: Tensor, compressor: str = "png") -> Tensor:
    """Compressed length of each image of ``x`` (N, C, H, W) in [0, 1]: (N,) float64 nats."""
    if compressor not in COMPRESSORS:
        raise VarfamError(
            f"score option compressor must be one of {', '.join(COMPRESSORS)}, got {compressor!r}"
        )
    if x.dim() != 4:
        raise VarfamError(
            f"score 'complexity' compresses images (N, C, H, W); this data has rows of shape "
            f"{tuple(x.shape[1:])}: use ratio or regret for tables"
        )
    values = torch.nan_to_num(x.detach().float().cpu(), nan=0.0).clamp(0, 1)
    pixels = (values * 255).round().to(torch.uint8).numpy()
    png = compressor == "png" and pixels.shape[1] in (1, 3)
    lengths = [
        _png_bytes(img) if png else len(zlib.compress(img.tobytes(), 9)) for img in pixels
    ]
    return torch.tensor(lengths, dtype=torch.float64) * _NATS_PER_BYTE


@SCORES.register(
    "complexity",
    "-log p(x) minus the input's PNG (or zlib) code length in nats; images only "
    "(options compressor, k)",
    "Serrà et al. 2020, Input Complexity and Out-of-distribution Detection with "
    "Likelihood-based Generative Models",
)
@dataclass(kw_only=True)
class InputComplexity(Score):
    """``-log p(x) - L(x)`` per row, nats (see the module doc)."""

    compressor: str = "png"
    k: int = 100
    name = "complexity"
    supports_labels = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self.k, "score option k")
        if self.compressor not in COMPRESSORS:
            raise VarfamError(f"score option compressor must be one of {', '.join(COMPRESSORS)}"
                              f", got {self.compressor!r}")

    def compute(self, model: VAE, x: Tensor, y: Tensor | None) -> Tensor:
        length = code_length(x, self.compressor)  # first: refuses tables before sampling
        nll = -log_likelihood(model, x, y, self.k, memory_mb=self.memory_mb, seed=self.seed)
        return nll - length
