"""The run's page: one self-contained ``report.html`` that leads with what a person looks at.

:func:`write_report` measures a run (:func:`varfam.evaluation.bounds.evaluate`, and the
test set's anomaly scores: :mod:`varfam.reporting.scoring`), records the numbers in
its ``metrics.jsonl`` and writes ``report.html``, top to bottom:

1. **the headline card** (:mod:`~varfam.reporting.headline`): the data and the parts
   with their papers, test ELBO, log p(x) with K and its standard error, active units,
   bits/dim, the classifier's accuracy, training time and speed, a verdict where one is
   due, and beside them the samples and reconstructions (a table: its marginals);
2. **training curves** side by side, the best epoch marked (:mod:`~varfam.reporting.curves`);
3. **pictures** in a grid: interpolations, traversals ordered by KL, the latent map,
   the decoded manifold (a table: correlations, latent map, per-column errors);
4. **samples per sampler** and their quality, where samplers were fitted or measured
   (:mod:`~varfam.reporting.sampling`);
5. **diagnostics**: every number measured, KL per dimension, the latent variances
   (:mod:`~varfam.reporting.diagnostics`); for a classifier, its confusion matrix;
6. **anomaly scores**: the test set's histogram, and with ``ood_data`` the other
   data's beside it and the ROC curve with its AUROC;
7. **disentanglement**, for data with known factors: the latent × factor mutual
   information and the metrics of ``varfam eval --factors`` (:mod:`~varfam.reporting.factors`);
8. **the configuration**, at the bottom: what differs from the defaults (nested options
   as tables), the ``varfam train`` command that trains the run again with a copy
   button, and every setting on demand (:mod:`~varfam.reporting.configuration`).

Pictures are matplotlib figures and Pillow grids embedded as PNG (:mod:`~varfam.reporting.markup`
says why: no script to vendor, the same pictures as the run folder and the trackers,
printable as they are). :func:`run_summary`, :func:`comparison_table` and
:func:`plot_comparison` (:mod:`~varfam.reporting.compare`) put runs side by side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from varfam.errors import VarfamError
from varfam.reporting import markup
from varfam.reporting.compare import comparison_table, plot_comparison, run_summary
from varfam.reporting.curves import training_curves
from varfam.reporting.markup import cell_table, esc, fmt, img, section
from varfam.reporting.pictures import Picture
from varfam.runs.checkpoint import load_run_config, write_text_atomic
from varfam.runs.metrics import append_record, jsonable, read_metrics

if TYPE_CHECKING:  # pragma: no cover
    from varfam.config import RunConfig
    from varfam.data import Dataset
    from varfam.model import VAE
    from varfam.reporting.scoring import PageScores

__all__ = [
    "REPORT",
    "read_metrics",
    "append_eval_line",
    "training_curves",
    "Extras",
    "render_report",
    "write_report",
    "run_summary",
    "comparison_table",
    "plot_comparison",
]

REPORT = "report.html"
#: The pictures the headline card shows, by kind of run (the others go to the grid).
HEADLINE_PICTURES = ("samples", "reconstructions", "marginals")


def append_eval_line(run_dir: str | Path, metrics: dict[str, Any], **context: Any) -> dict:
    """Append ``{"kind": "eval", "time": ..., **context, **metrics}`` to ``metrics.jsonl``."""
    epochs, _ = read_metrics(run_dir)
    record = {
        "kind": "eval",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "after_epoch": epochs[-1].get("epoch") if epochs else None,
        **context,
        **metrics,
    }
    append_record(run_dir, record)
    return jsonable(record)


@dataclass
class Extras:
    """What the page shows beside the measures, where it has it: the run's config, the
    data's name, the anomaly scores, the test examples' known factors (N, F) and names."""

    cfg: RunConfig | None = None
    data_name: str | None = None
    scores: PageScores | None = None
    score_problem: str | None = None
    factors: torch.Tensor | None = None
    factor_names: tuple[str, ...] | None = None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- pieces of the page
def _figure(p: Picture, *, pixels: bool | None = None) -> str:
    """A picture in the grid: image (if any), title and note; ``id`` its key."""
    if pixels is None:
        pixels = isinstance(p.image, Image.Image)  # an image grid, not a figure
    body = "" if p.image is None else img(p.png(), p.alt, pixels=pixels, key=p.key)
    return (f'<figure id="{esc(p.key)}">{body}<figcaption><b>{esc(p.title)}</b>. '
            f'<span class="note">{esc(p.note)}</span></figcaption></figure>')


def _grid(pictures: list[Picture], cls: str = "grid") -> str:
    return f'<div class="{cls}">' + "".join(_figure(p) for p in pictures) + "</div>"


def _run_pictures(model: VAE, x: torch.Tensor, labels: torch.Tensor | None, m: dict[str, Any],
                  seed: int) -> list[Picture]:
    """The run's pictures (:func:`~varfam.reporting.pictures.run_pictures`, or a table's
    :func:`~varfam.tables.report.table_figures`)."""
    from varfam.reporting.pictures import run_pictures
    from varfam.tables.report import is_table, table_figures

    if is_table(model):
        return table_figures(model, x, labels, seed)
    return run_pictures(model, x, labels, seed=seed, metrics=m)


def _curves(epochs: list[dict[str, Any]]) -> str:
    if not epochs:
        return '<p class="note">No epochs logged in metrics.jsonl.</p>'
    p = Picture("training-curves", "", "training curves", "", training_curves(epochs))
    return (img(p.png(), "training curves", key="training-curves")
            + '<p class="note">Train loss (the objective\'s, per example), the test and '
            "validation ELBO at each evaluation, and the test ELBO against training time; "
            "the star marks the best evaluation (validation where there is one: the saved "
            "weights).</p>")


def _table_errors(model: VAE, x: torch.Tensor, labels: torch.Tensor | None, seed: int) -> str:
    from varfam.tables.report import column_errors

    rows = [[r["column"], r["type"], str(r["observed"]), r["measure"], fmt(r["error"], 3),
             fmt(r["baseline"], 3)] for r in column_errors(model, x, seed, labels)]
    return ('<h3 id="column-errors">Per-column errors</h3>'
            + cell_table(rows, header=("column", "type", "observed cells", "measure",
                                       "reconstruction", "column mean / mode"),
                         numeric=(False, False, True, False, True, True))
            + '<p class="note">Each observed cell reconstructed from its row\'s latent mean '
            "(the decoder's point value, original units), against guessing the column's "
            "observed mean (RMSE) or most common level (error rate).</p>")


def _samplers(run_dir: Path, model: VAE, evals: list[dict[str, Any]], seed: int,
              table: bool) -> str:
    from varfam.reporting.sampling import fitted_samplers, quality_html, sampler_rows

    body = ""
    samplers, problems = fitted_samplers(run_dir, model)
    if samplers and not table:
        body += _grid([sampler_rows(model, samplers, seed)], "grid two")
    body += "".join(f'<p class="note">Left out: {esc(p)}</p>' for p in problems)
    return body + quality_html(evals)


def _scores(extras: Extras) -> str:
    from varfam.reporting.scoring import score_pictures

    if extras.scores is None:
        return f'<p class="note">{esc(extras.score_problem)}</p>' if extras.score_problem else ""
    s = extras.scores
    body = _grid(score_pictures(s, extras.data_name or "the run's data"), "grid two")
    if s.auroc is not None:
        body = (f'<p data-metric="auroc">AUROC of {esc(s.method)} telling {esc(s.other_name)} '
                f"from {esc(extras.data_name)}: <b>{s.auroc:.3f}</b></p>" + body)
    return body


def _factors(model: VAE, x: torch.Tensor, labels: torch.Tensor | None, m: dict[str, Any],
             extras: Extras, evals: list[dict[str, Any]]) -> str:
    from varfam.reporting.factors import factor_metrics_html, mutual_information_picture

    body = factor_metrics_html(evals)
    if extras.factors is not None and len(extras.factors) == len(x) and len(x) > 1:
        try:
            p = mutual_information_picture(model, x, labels, extras.factors,
                                           extras.factor_names, m)
            body = _grid([p], "grid two") + body
        except VarfamError as e:
            body = f'<p class="note">No heat map: {esc(e)}</p>' + body
    return body


# ---------------------------------------------------------------- the page
def render_report(run_dir: Path, model: VAE, cfg_dict: dict[str, Any], x: torch.Tensor,
                  labels: torch.Tensor | None, m: dict[str, Any], seed: int = 0,
                  extras: Extras | None = None) -> str:
    """The HTML page of a run (see the module doc); ``m``: :func:`evaluate`'s results on
    the test examples ``x`` (with ``labels``)."""
    from varfam.reporting.configuration import configuration_html
    from varfam.reporting.diagnostics import confusion_picture, dimension_pictures, metrics_rows
    from varfam.reporting.headline import headline_html
    from varfam.tables.report import is_table

    extras = extras or Extras()
    run_dir = Path(run_dir)
    epochs, evals = read_metrics(run_dir)
    table = is_table(model)
    pictures = _run_pictures(model, x, labels, m, seed)
    first = [p for p in pictures if p.key in HEADLINE_PICTURES]
    first.sort(key=lambda p: HEADLINE_PICTURES.index(p.key))
    rest = [p for p in pictures if p.key not in HEADLINE_PICTURES]
    data = extras.data_name or (cfg_dict.get("data") or {}).get("source") or "data"
    parts = [headline_html(m, epochs, extras.cfg, cfg_dict.get("model") or {}, str(data), first)]

    sections: list[tuple[str, str, str]] = [
        ("training-curves", "Training curves", _curves(epochs)),
        ("pictures", "Pictures",
         _grid(rest) + (_table_errors(model, x, labels, seed) if table else "")),
    ]
    samples = _samplers(run_dir, model, evals, seed, table)
    if samples:
        sections.append(("samplers", "Samples per sampler", samples))
    rows = cell_table(metrics_rows(m, epochs))
    note = ('<p class="note">Two test ELBOs can appear above and differ: this page\'s own, on '
            f"the first {m['n']} test examples with fresh draws of z (seed {seed}), and the one "
            "training printed, from its last evaluation of the whole test set with the draws "
            "of z made then. Both estimate the same mean; they differ by sampling noise (the "
            "± is one standard error) and by the examples included.</p>")
    sections.append(("diagnostics", "Diagnostics",
                     '<div class="grid two"><div>' + rows + note + "</div>"
                     + "".join(_figure(p) for p in dimension_pictures(m)) + "</div>"))
    if model.has_classifier and labels is not None and bool((labels >= 0).any()):
        acc = m.get("accuracy")
        sections.append(("classifier", "Classifier q(y|x)",
                         f'<p>Test accuracy <b data-metric="classifier-accuracy">'
                         f"{fmt(None if acc is None else 100 * acc, 1)} %</b></p>"
                         + _grid([confusion_picture(model, x, labels)], "grid two")))
    scores = _scores(extras)
    if scores:
        sections.append(("scores", "Anomaly scores", scores))
    factors = _factors(model, x, labels, m, extras, evals)
    if factors:
        sections.append(("disentanglement", "Disentanglement", factors))
    sections.append(("configuration", "Configuration",
                     configuration_html(cfg_dict, extras.cfg)))
    parts.append(markup.toc([(k, t) for k, t, _ in sections]))
    parts += [section(k, t, body) for k, t, body in sections]
    parts += [f'<p class="note">{esc(n)}</p>' for n in extras.notes]
    title = f"varfam run {run_dir.name}"
    subtitle = f"report of {time.strftime('%Y-%m-%d %H:%M')}, seed {seed}"
    return markup.document(title, "\n".join(parts), subtitle=subtitle)


def _page_scores(model: VAE, cfg: RunConfig, x: torch.Tensor, labels: torch.Tensor | None,
                 ood_data: str | Dataset | None, limit: int | None, method: str | None,
                 k: int, seed: int) -> tuple[PageScores | None, str | None]:
    """The scores the page shows, or why there are none (a one-line reason)."""
    from varfam.reporting.scoring import page_scores
    from varfam.runs.folder import run_eval_data

    if method is None:
        if ood_data is not None:
            raise VarfamError("ood_data is scored with a score method; give one (nll)")
        return None, None
    other = None
    if ood_data is not None:
        ods = run_eval_data(cfg, ood_data)
        model.check_data(ods, f"the data {ood_data}")
        name = ood_data if isinstance(ood_data, str) else ods.name
        y2 = ods.test_labels[:limit] if (limit and ods.test_labels is not None) \
            else ods.test_labels
        other = (str(name), ods.test[:limit] if limit else ods.test, y2)
    try:
        return page_scores(model, x, labels, method=method, k=k, seed=seed, other=other), None
    except VarfamError as e:
        if ood_data is not None:
            raise
        return None, f"No anomaly scores: {e}"


def write_report(
    run_dir: str | Path,
    *,
    data: str | Dataset | None = None,
    iw: int = 100,
    limit: int | None = 500,
    seed: int = 0,
    record: bool = True,
    model: VAE | None = None,
    ood_data: str | Dataset | None = None,
    score: str | None = "nll",
    score_k: int = 16,
) -> Path:
    """Measure a run and write ``RUN/report.html``; returns its path.

    ``data`` is another dataset (name, path or :class:`~varfam.data.Dataset`) to
    evaluate on instead of the run's own. The metrics use ``iw`` importance samples
    on the first ``limit`` test examples and, with ``record``, are appended to
    ``metrics.jsonl`` as an eval line (``"source": "report"``). ``model``: the run's
    model already in memory (as saved), instead of loading it from the folder again.
    ``score``: the anomaly score whose histogram the page shows (a method of
    :mod:`varfam.evaluation.scores`, ``score_k`` importance samples; ``None``: none);
    ``ood_data``: a second data set whose test examples are scored too, for the ROC
    curve and its AUROC (recorded as ``ood_auroc``).
    """
    from varfam.evaluation.bounds import evaluate
    from varfam.runs.folder import open_run, run_eval_data

    run_dir = Path(run_dir)
    if model is None:
        model, cfg = open_run(run_dir)
    else:
        cfg = load_run_config(run_dir)
    ds = run_eval_data(cfg, data)
    x = ds.test[:limit] if limit else ds.test
    labels = ds.test_labels[:limit] if (limit and ds.test_labels is not None) else ds.test_labels
    scores, problem = _page_scores(model, cfg, x, labels, ood_data, limit, score, score_k, seed)
    m = evaluate(model, ds, iw=iw, limit=limit, seed=seed)
    name = data if isinstance(data, str) else (cfg.data.source if data is None else ds.name)
    if record:
        append_eval_line(run_dir, m, source="report", data=name, limit=limit,
                         **(scores.record() if scores is not None else {}))
    factors = ds.test_factors if ds.test_factors is not None else None
    extras = Extras(cfg=cfg, data_name=str(name), scores=scores, score_problem=problem,
                    factors=None if factors is None else factors[: len(x)],
                    factor_names=ds.factor_names)
    page = render_report(run_dir, model, cfg.to_dict(), x, labels, m, seed=seed, extras=extras)
    write_text_atomic(run_dir / REPORT, page)
    return run_dir / REPORT
