"""What the subcommands share: argument types, opening a run, writing pictures and arrays.

Nothing here parses a whole command line; each subcommand module adds its own parser.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from varfam.errors import VarfamError

__all__ = [
    "Parser", "number", "positive_int", "nonnegative_int", "positive_float", "nonnegative_float",
    "hidden_widths", "tracker_names", "key_value", "open_run_for_command", "write_images",
    "image_output", "is_table_run", "needs_condition", "data_labels", "read_latents",
]


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def number(kind: type, minimum: float, inclusive: bool) -> Callable[[str], Any]:
    """An argparse type: a finite ``int``/``float`` above (or at) ``minimum``."""
    noun = "whole number" if kind is int else "number"
    bound = f"at least {minimum:g}" if inclusive else f"more than {minimum:g}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a {noun}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a finite {noun} {bound}, got {text}")
        return value

    return parse


positive_int = number(int, 1, inclusive=True)
nonnegative_int = number(int, 0, inclusive=True)
positive_float = number(float, 0.0, inclusive=False)
nonnegative_float = number(float, 0.0, inclusive=True)


def hidden_widths(text: str) -> tuple[int, ...]:
    """``400`` or ``512,256``: positive widths separated by single commas."""
    parts = [t.strip() for t in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(
            f"'{text}' has an empty width between commas; write widths like 512,256"
        )
    try:
        widths = tuple(int(t) for t in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a comma-separated list of widths"
        ) from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive whole numbers, got '{text}'")
    return widths


def tracker_names(text: str) -> list[str]:
    """``tensorboard,mlflow``: known tracker names, comma-separated."""
    from varfam.config import TRACKERS
    from varfam.errors import suggest

    names = [t.strip() for t in text.split(",")]
    for name in names:
        if name not in TRACKERS:
            raise argparse.ArgumentTypeError(
                f"unknown tracker '{name}'{suggest(name, TRACKERS)}; "
                f"choose from {', '.join(TRACKERS)}"
            )
    return list(dict.fromkeys(names))


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, true/false), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().replace("-", "_"), value


def open_run_for_command(run: str):
    """Load a run for a subcommand (model on CPU in eval mode, and its config)."""
    from varfam.runs.folder import open_run

    return open_run(run)


def write_images(images, output: str, ncol: int) -> None:
    import numpy as np

    from varfam.reporting.pictures import save_grid

    path = image_output(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npy":
        np.save(path, images.detach().cpu().numpy())
    else:
        save_grid(images, path, ncol=ncol)
    print(path)


def is_table_run(model) -> bool:
    """Whether ``model`` models a table (the ``mixed`` likelihood): its outputs are rows."""
    from varfam.likelihoods.mixed import MixedLikelihood

    return isinstance(model.likelihood, MixedLikelihood)


def image_output(output: str, model=None, *, rows: bool = False) -> Path:
    """``output`` as a path if it names a picture or an array file (checked before any work).

    With the run's ``model``: a table run's outputs are rows, never pictures, so it takes
    ``.npy`` (the model's array, in model units) and, where the command writes rows in
    the table's units and levels (``rows``), the table formats (``.csv``, ``.tsv``,
    ``.parquet``).
    """
    path = Path(output)
    suffix = path.suffix.lower()
    if model is not None and is_table_run(model):
        from varfam.data.tables import TABLE_SUFFIXES

        if suffix in ((*TABLE_SUFFIXES, ".npy") if rows else (".npy",)):
            return path
        formats = (".csv, .tsv or .parquet (rows in the table's units) or .npy (model units)"
                   if rows else ".npy (model units); varfam decode and varfam sample write "
                   "rows in the table's units to .csv")
        raise VarfamError(f"output {output}: a table run makes rows, not pictures; write "
                          f"{formats}")
    if suffix not in (".png", ".jpg", ".jpeg", ".npy"):
        raise VarfamError(
            f"output {output} must end in .png, .jpg or .jpeg (a picture grid) or .npy (the array)"
        )
    return path


def needs_condition(model, flag: str) -> None:
    if not model.uses_labels:
        raise VarfamError(f"{flag} needs a run conditioned on labels "
                          "(varfam train --condition label)")


def data_labels(model, labels):
    """The labels a run conditioned on labels reads (``None`` for other runs); a
    :class:`VarfamError` when such a run meets data without labels and has no classifier."""
    if not model.uses_labels:
        return None
    if labels is None and not model.has_classifier:
        from varfam.data.labels import LABEL_SOURCES

        raise VarfamError("this run is conditioned on labels, but the data has none; "
                          f"use labelled data ({LABEL_SOURCES})")
    return labels


def read_latents(path: str, latent_dim: int):
    """Latents (N, D) from a ``.npy`` (N, D) or encode's (N, 2, D), or encode's ``.npz``
    (its ``loc``; or its only array). Finite numbers only; a :class:`VarfamError` otherwise."""
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise VarfamError(f"latents file {path} does not exist") from None
    except (ValueError, OSError, EOFError) as e:
        raise VarfamError(f"cannot read {path} as a .npy or .npz array ({e})") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if "loc" not in names and len(names) != 1:
                raise VarfamError(
                    f"{path} holds no 'loc' array (the one varfam encode writes) but "
                    f"{', '.join(names) or 'no arrays'}; save the latents as 'loc'"
                )
            try:
                z = loaded["loc" if "loc" in names else names[0]]
            except ValueError as e:  # an object array needs pickle
                raise VarfamError(f"cannot read {path}: {e}") from None
    else:
        z = loaded
        if z.ndim == 3 and z.shape[1] == 2:  # encode's .npy: [mean, scale] per example
            z = z[:, 0]
    if z.dtype.kind not in "uif":
        raise VarfamError(f"latents in {path} have dtype {z.dtype}; they must be numbers")
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise VarfamError(
            f"latents must have shape (N, {latent_dim}) for this run, got {z.shape}"
        )
    if not np.isfinite(z).all():
        bad = int((~np.isfinite(z)).any(1).sum())
        raise VarfamError(
            f"{path} holds non-finite latents (NaN or inf) in {bad} of {z.shape[0]} rows; "
            "decode only finite numbers"
        )
    return z
