"""Image grids: data viewed as images and tiled into one picture, with labelled rows.

Grids are assembled with numpy and written with Pillow (exact pixels, fast); nothing
here needs a model. Images are (N, C, H, W) or (N, D) tensors in [0, 1].
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

__all__ = ["as_images", "image_grid", "scaled_grid", "save_grid", "label_rows"]


def as_images(x: Tensor) -> Tensor:
    """View data as (N, C, H, W): vectors (N, D) become a square-ish 1-channel image."""
    if x.dim() == 4:
        return x
    if x.dim() == 3:
        return x.unsqueeze(1)
    d = x.shape[1]
    side = math.isqrt(d)
    if side * side == d:
        return x.view(-1, 1, side, side)
    return x.view(-1, 1, 1, d)


def image_grid(images: Tensor, ncol: int, pad: int = 2, scale: int = 1) -> Image.Image:
    """Tile images (N, C, H, W) in [0, 1] into one PIL image, ``ncol`` per row."""
    images = as_images(images.detach().float().cpu()).clamp(0, 1)
    n, c, h, w = images.shape
    nrow = max(1, -(-n // ncol))
    grid = np.ones((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), dtype=np.float32)
    for k in range(n):
        r, q = divmod(k, ncol)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, y : y + h, x : x + w] = images[k].numpy()
    arr = (grid * 255 + 0.5).astype(np.uint8)
    img = Image.fromarray(arr[0] if c == 1 else arr[:3].transpose(1, 2, 0))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def _auto_scale(images: Tensor) -> int:
    h = as_images(images).shape[-2]
    return max(1, 56 // h) if h < 56 else 1


def scaled_grid(images: Tensor, ncol: int) -> Image.Image:
    """:func:`image_grid` with small images enlarged for viewing (to about 56 pixels high)."""
    return image_grid(images, ncol, scale=_auto_scale(images))


def save_grid(images: Tensor, path: str | Path, ncol: int = 8) -> Path:
    """Write images as a PNG grid (small images are enlarged for viewing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scaled_grid(images, ncol).save(path)
    return path


def label_rows(grid: Image.Image, names: list[str], rows: int) -> Image.Image:
    """``grid`` with ``names[r]`` written left of its row r (``rows`` rows of equal height)."""
    from PIL import ImageDraw, ImageFont

    font = ImageFont.load_default()
    draw = ImageDraw.Draw(grid)
    width = max(int(draw.textlength(n, font=font)) for n in names) + 8
    out = Image.new(grid.mode, (grid.width + width, grid.height), "white" if grid.mode == "RGB"
                    else 255)
    out.paste(grid, (width, 0))
    draw = ImageDraw.Draw(out)
    height = grid.height / rows
    for r, name in enumerate(names):
        draw.text((4, int((r + 0.5) * height) - 6), name, fill="black" if out.mode == "RGB"
                  else 0, font=font)
    return out
