"""Samples per sampler on a run's page: a row of samples from each, and their quality.

A run folder keeps the samplers fitted after training in ``RUN/samplers/``
(:mod:`varfam.samplers.files`). :func:`fitted_samplers` loads them (a sampler fitted on
other weights, or a damaged file, is left out with the reason); :func:`sampler_rows`
draws one row of decoded samples from the prior and from each, in one picture;
:func:`quality_rows` reads the sample-quality numbers that ``varfam eval RUN
--samples N`` appended to ``metrics.jsonl`` (``"source": "samples"``: FD, KID,
precision and recall of each sampler, and the test set's floor).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from varfam.errors import VarfamError
from varfam.reporting.markup import cell_table, esc, fmt
from varfam.reporting.pictures import Picture, image_grid, label_rows

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE
    from varfam.samplers.base import Sampler

__all__ = ["fitted_samplers", "sampler_rows", "latest_quality", "quality_rows",
           "quality_html"]

#: Samples per row of :func:`sampler_rows`.
PER_ROW = 10


def fitted_samplers(run_dir: str | Path, model: VAE) -> tuple[dict[str, Sampler], list[str]]:
    """The samplers saved in ``RUN/samplers/`` that serve ``model`` ({name: sampler}, in
    name order), and one line per saved sampler that could not be used."""
    from varfam.samplers.files import load_sampler

    folder = Path(run_dir) / "samplers"
    found: dict[str, Sampler] = {}
    problems = []
    for config in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            found[config.stem] = load_sampler(config.with_suffix(""), model)
        except VarfamError as e:
            problems.append(f"{config.stem}: {e}")
    return found, problems


@torch.no_grad()
def sampler_rows(model: VAE, samplers: dict[str, Sampler], seed: int = 0) -> Picture:
    """One row of :data:`PER_ROW` decoded samples from the prior, then from each fitted
    sampler, named on the left; drawn in eval mode under ``seed``."""
    rows, names = [], ["prior"]
    with model.evaluating(seed):
        rows.append(model.sample(PER_ROW).float().cpu())
        for name, sampler in samplers.items():
            rows.append(model.sample(PER_ROW, sampler=sampler).float().cpu())
            names.append(name)
    images = torch.cat(rows)
    h = images.shape[-2] if images.dim() == 4 else 8
    scale = max(1, 56 // h) if h < 56 else 1
    grid = label_rows(image_grid(images, PER_ROW, scale=scale), names, len(names))
    how = ("z drawn from the prior p(z)" + (", and from each sampler fitted after training "
                                            "on the encoder's latents of the training set "
                                            "(RUN/samplers/)" if samplers else ""))
    return Picture("samples-per-sampler", "Samples per sampler", "samples per sampler",
                   f"One row per sampler, named on the left: decoded means of {PER_ROW} draws, "
                   f"{how}.", grid)


def latest_quality(evals: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest sample-quality line of each sampler (and of the floor), by name."""
    out: dict[str, dict[str, Any]] = {}
    for r in evals:
        if r.get("source") == "samples" and r.get("sampler"):
            out[str(r["sampler"])] = r
    return dict(sorted(out.items(), key=lambda kv: kv[0] != "floor"))


def quality_rows(evals: list[dict[str, Any]]) -> tuple[list[list[str]], list[tuple[int, int]]]:
    """Rows (sampler, FD, KID × 10³, precision, recall, samples) of the latest lines, and
    the (row, column) cells that are the best among the samplers (the floor excluded)."""
    latest = latest_quality(evals)
    rows, values = [], []
    for name, r in latest.items():
        label = "test vs train (floor)" if name == "floor" else name
        kid = r.get("kid")
        kid_text = fmt(None if kid is None else 1e3 * kid, 2,
                       se=None if r.get("kid_std") is None else 1e3 * r["kid_std"])
        rows.append([label, fmt(r.get("fd"), 3), kid_text, fmt(r.get("precision"), 3),
                     fmt(r.get("recall"), 3), fmt(r.get("n"))])
        values.append((name, r))
    best = []
    for col, key, lower in ((1, "fd", True), (2, "kid", True), (3, "precision", False),
                            (4, "recall", False)):
        scored = [(i, r[key]) for i, (name, r) in enumerate(values)
                  if name != "floor" and isinstance(r.get(key), (int, float))]
        if len(scored) > 1:
            i, _ = (min if lower else max)(scored, key=lambda t: t[1])
            best.append((i, col))
    return rows, best


def quality_html(evals: list[dict[str, Any]]) -> str:
    """The sample-quality table (empty string when no such line was recorded)."""
    from varfam.evaluation.sample_quality import NOTE

    rows, best = quality_rows(evals)
    if not rows:
        return ""
    latest = list(latest_quality(evals).values())
    features = next((r.get("features") for r in latest if r.get("features")), None)
    return (cell_table(rows, header=("sampler", "FD", "KID × 10³", "precision", "recall",
                                     "samples"),
                       numeric=(False, True, True, True, True, True), best=best)
            + '<p class="note">From <code>varfam eval RUN --samples N</code>: lower FD and KID '
            "and higher precision and recall are better (best marked ★); the floor is the "
            f"test set measured the same way. {NOTE[0].upper() + NOTE[1:]}."
            + (f" Features: {esc(features)}." if features else "") + "</p>")
