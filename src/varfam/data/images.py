"""A folder of image files (PNG, JPEG, …) → :class:`Dataset`, read with Pillow.

Rules:

- The folder is searched recursively; hidden files and folders (``.name``) and
  files with other suffixes are skipped. Files are taken in sorted path order.
- Labels: when every image lies inside a sub-folder, the name of its immediate
  sub-folder is its class (classes sorted by name, label = index); otherwise there
  are no labels.
- Channels: 1 when every image is greyscale (Pillow modes 1, L, LA, I, I;16, F),
  otherwise 3 and grey images are repeated to RGB. Alpha is dropped; palette
  images are read as RGB.
- Values: 8-bit images are divided by 255, 16-bit ones by 65535; float (mode F)
  images must already lie in [0, 1].
- Size: all images must have the same size, unless ``image_size`` is given; then
  each is resized (antialiased bilinear, not cropped) to ``image_size`` squared.
- The fixed seeded 90/10 train/test split of user data (at least one test image).

Any file that Pillow cannot decode ends in a :class:`VarfamError` naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from varfam.data.base import (
    SPLIT_SEED,
    Dataset,
    check_image_size,
    held_out_count,
    one_line,
    split_indices,
)
from varfam.errors import VarfamError

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_image_folder"]

#: Suffixes (lower case) of the files read as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


@dataclass(frozen=True)
class _Header:
    size: tuple[int, int]  # (width, height), as Pillow gives it
    grey: bool


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, hidden entries skipped), sorted by path."""
    folder = Path(folder)
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(root) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _header(path: Path) -> _Header:
    try:
        with Image.open(path) as im:
            return _Header(im.size, im.mode in _GREY_MODES)
    except Exception as e:  # Pillow raises many types for files it cannot parse
        raise VarfamError(f"cannot read image {path}: {one_line(e)}") from None


def _decode(im: Image.Image, channels: int, size: tuple[int, int], path: Path) -> np.ndarray:
    """Decoded pixels (C, H, W) float32 of an open image, resized to ``size`` (W, H)."""
    if im.mode in _WIDE_MODES:
        arr = np.asarray(im, dtype=np.float32)
        if im.mode == "F":
            if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
                raise VarfamError(
                    f"float image {path} has values outside [0, 1]; save it as 8- or 16-bit"
                )
        else:
            arr = np.clip(arr / 65535.0, 0.0, 1.0)
        if im.size != size:
            arr = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BILINEAR))
        arr = arr[None]
        return np.repeat(arr, channels, axis=0) if channels == 3 else arr
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    im = im.convert("L" if channels == 1 else "RGB")
    if im.size != size:
        im = im.resize(size, Image.Resampling.BILINEAR)
    arr = np.asarray(im, dtype=np.float32) / np.float32(255.0)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _pixels(path: Path, channels: int, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            arr = _decode(im, channels, size, path)
    except VarfamError:
        raise
    except Exception as e:  # truncated data, bad chunks, decoder errors, ...
        raise VarfamError(f"cannot read image {path}: {one_line(e)}") from None
    if arr.shape != (channels, size[1], size[0]):
        raise VarfamError(
            f"image {path} decodes to shape {arr.shape[1:]}, not the {size[1]}x{size[0]} "
            "its header says; re-save it"
        )
    return arr


def _labels(folder: Path, files: list[Path]) -> tuple[torch.Tensor | None, tuple[str, ...] | None]:
    parts = [f.relative_to(folder).parts for f in files]
    if not all(len(p) > 1 for p in parts):
        return None, None
    classes = tuple(sorted({p[0] for p in parts}))
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[p[0]] for p in parts], dtype=torch.int64), classes


def read_image_folder(folder: str | Path, *, image_size: int | None = None) -> Dataset:
    """Read every image under ``folder`` into (N, C, H, W) float32 in [0, 1] (see module doc)."""
    folder = Path(folder)
    image_size = check_image_size(image_size)
    files = list_images(folder)
    if not files:
        raise VarfamError(
            f"found no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}; "
            "point --data at a folder of images or a .npy/.npz file"
        )
    if len(files) < 2:
        raise VarfamError(f"{folder} holds one image; a dataset needs at least 2 (train and test)")
    headers = [_header(f) for f in files]
    if image_size is not None:
        size = (image_size, image_size)
    else:
        size = headers[0].size
        for f, h in zip(files, headers):
            if h.size != size:
                first, other = (p.relative_to(folder).as_posix() for p in (files[0], f))
                raise VarfamError(
                    f"images in {folder} differ in size ({first} is {size[0]}x{size[1]}, "
                    f"{other} is {h.size[0]}x{h.size[1]}); pass --image-size N to resize all to NxN"
                )
    channels = 1 if all(h.grey for h in headers) else 3
    labels, classes = _labels(folder, files)
    tr, te = split_indices(len(files), held_out_count(len(files)), SPLIT_SEED)
    parts = []
    for idx in (tr, te):
        out = np.empty((len(idx), channels, size[1], size[0]), dtype=np.float32)
        for row, i in enumerate(idx.tolist()):
            out[row] = _pixels(files[i], channels, size)
        parts.append(torch.from_numpy(out))
    return Dataset(
        folder.resolve().name or "images",
        parts[0],
        parts[1],
        None if labels is None else labels[tr],
        None if labels is None else labels[te],
        classes,
        tr,
        te,
    )
