"""The run report: one self-contained HTML page, and side-by-side summaries of runs.

:func:`write_report` measures a run (:func:`varfam.evaluation.bounds.evaluate`), records the
numbers in its ``metrics.jsonl`` and writes ``report.html``: configuration,
training curves, metrics, reconstructions, prior samples, interpolations, latent
traversals, the latent map and, for 2-D latents, the decoded manifold. Images are
embedded as base64 PNG, so the page has no external assets.

:func:`run_summary`, :func:`comparison_table` and :func:`plot_comparison` put
several runs side by side (``varfam compare``).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from varfam.runs.checkpoint import load_run_config, write_text_atomic
from varfam.runs.metrics import append_record, jsonable, read_metrics

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from varfam.data import Dataset
    from varfam.model import VAE

__all__ = [
    "REPORT",
    "read_metrics",
    "append_eval_line",
    "training_curves",
    "write_report",
    "run_summary",
    "comparison_table",
    "plot_comparison",
]

REPORT = "report.html"


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


# ---------------------------------------------------------------- pictures → base64
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _pyplot().close(fig)
    return buf.getvalue()


def _img_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def training_curves(epochs: list[dict[str, Any]]) -> Figure:
    """Train loss and test ELBO (nats) against epoch and against wall time, 2 × 2 panels."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), dpi=90)
    ep = [r.get("epoch", i + 1) for i, r in enumerate(epochs)]
    wall = [r.get("wall_time", math.nan) for r in epochs]
    for row, (key, label) in enumerate((("train_loss", "train loss (nats)"),
                                        ("test_elbo", "test ELBO (nats)"))):
        ys = [r.get(key, math.nan) for r in epochs]
        for col, (xs, xlabel) in enumerate(((ep, "epoch"), (wall, "wall time (s)"))):
            ax = axes[row][col]
            ax.plot(xs, ys, marker="o", markersize=3)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _bar_chart(values: list[float], ylabel: str, threshold: float | None = None) -> Figure:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * len(values) + 2), 2.8), dpi=90)
    ax.bar(range(1, len(values) + 1), values, color="#4c72b0")
    if threshold is not None:
        ax.axhline(threshold, color="#c44e52", lw=1, ls="--", label=f"active: > {threshold:g}")
        ax.legend(fontsize=7)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the page
def _fmt(value: Any, digits: int = 2, se: Any = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    if se is not None and isinstance(se, float) and math.isfinite(se):
        text += f" ± {se:.{digits}f}"
    return text


def _metrics_rows(m: dict[str, Any], epochs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    k = m.get("iw", 0)
    rows = [
        ("test examples", _fmt(m["n"])),
        ("test ELBO (nats): these test examples, fresh draws of z",
         _fmt(m["elbo"], se=m.get("elbo_se"))),
        ("reconstruction E_q log p(x|z) (nats)", _fmt(m["reconstruction"])),
        ("KL(q(z|x) ‖ p(z)) (nats)", _fmt(m["kl"])),
        (f"log p(x), importance sampled, K = {k} (nats)",
         _fmt(m.get("log_likelihood"), se=m.get("log_likelihood_se"))),
        (f"ELBO from the same K = {k} samples (nats)", _fmt(m.get("elbo_iw_samples"))),
        ("inference gap log p(x) − ELBO (nats)",
         _fmt(m.get("inference_gap"), se=m.get("inference_gap_se"))),
    ]
    if m.get("conditional"):  # a model conditioned on labels, measured with the test labels
        rows[1:5] = [
            ("test ELBO of log p(x|y) (nats)", _fmt(m["elbo"], se=m.get("elbo_se"))),
            ("reconstruction E_q log p(x|z, y) (nats)", _fmt(m["reconstruction"])),
            ("KL(q(z|x, y) ‖ p(z|y)) (nats)", _fmt(m["kl"])),
            (f"log p(x|y), importance sampled, K = {k} (nats)",
             _fmt(m.get("log_likelihood"), se=m.get("log_likelihood_se"))),
        ]
    if m.get("accuracy") is not None or m.get("marginal_log_likelihood") is not None:
        rows += [("test accuracy of q(y|x)", _fmt(m.get("accuracy"), 4)),
                 (f"log p(x), y summed out, K = {k} per class (nats)",
                  _fmt(m.get("marginal_log_likelihood"), se=m.get("marginal_log_likelihood_se")))]
    if m.get("elbo_bpd") is not None:
        rows += [("−ELBO (bits/dim)", _fmt(m["elbo_bpd"], 4)),
                 ("−log p(x) (bits/dim)", _fmt(m.get("log_likelihood_bpd"), 4))]
    rows += [
        ("active units (Cov_x E_q[z_u] > 0.01)", f"{m['active_units']} of {m['latent_dim']}"),
        (f"mutual information I(x; z) under q, {m.get('mi_examples')} examples (nats)",
         _fmt(m.get("mutual_information"))),
        (f"probe accuracy (logistic regression, {m.get('probe_train')} train examples)",
         _fmt(m.get("probe_accuracy"), 3)),
    ]
    if epochs:
        scored = [r for r in epochs if "test_elbo" in r]
        if scored:  # what training printed: other draws of z, and all of the test set
            rows.append((f"test ELBO at training's last evaluation (epoch {scored[-1]['epoch']}, "
                         "the whole test set, the draws of z made then) (nats)",
                         _fmt(scored[-1]["test_elbo"])))
        secs = [r["epoch_seconds"] for r in epochs if "epoch_seconds" in r]
        rows.append(("seconds per epoch (training)", _fmt(sum(secs) / len(secs) if secs else None)))
    rows.append(("evaluation time (s)", _fmt(m.get("seconds"), 1)))
    return rows


def _section(key: str, title: str, body: str) -> str:
    return f'<section id="{key}">\n<h2>{html.escape(title)}</h2>\n{body}\n</section>'


_STYLE = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
img{image-rendering:pixelated;max-width:100%}p.note{color:#555}"""


def _pictures(model: VAE, x: torch.Tensor, labels: torch.Tensor | None, m: dict[str, Any],
              seed: int = 0) -> list[tuple[str, str, str]]:
    """(key, title, html body) of every picture section: the run's pictures
    (:func:`~varfam.reporting.pictures.run_pictures`, or a table's
    :func:`~varfam.tables.report.table_figures`), each image above its note."""
    from varfam.reporting.pictures import run_pictures
    from varfam.tables.report import is_table, table_figures

    if is_table(model):
        pictures = table_figures(model, x, labels, seed)
    else:
        pictures = run_pictures(model, x, labels, seed=seed, metrics=m)
    return [(p.key, p.title, ("" if p.image is None else _img_tag(p.png(), p.alt))
             + f'<p class="note">{html.escape(p.note, quote=False)}</p>') for p in pictures]


def render_report(run_dir: Path, model: VAE, cfg_dict: dict[str, Any], x: torch.Tensor,
                  labels: torch.Tensor | None, m: dict[str, Any], seed: int = 0) -> str:
    """The HTML page of a run (see :func:`write_report`)."""
    epochs, _ = read_metrics(run_dir)
    sections = []
    cfg_rows = "".join(
        f"<tr><th>{html.escape(sec)}.{html.escape(k)}</th><td>{html.escape(json.dumps(v))}</td></tr>"
        for sec in ("model", "train") for k, v in cfg_dict.get(sec, {}).items()
    )
    sections.append(_section("configuration", "Configuration", f"<table>{cfg_rows}</table>"))
    if epochs:
        body = _img_tag(_figure_png(training_curves(epochs)), "training curves")
    else:
        body = '<p class="note">No epochs logged in metrics.jsonl.</p>'
    sections.append(_section("training-curves", "Training curves", body))
    rows = "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>"
                   for a, b in _metrics_rows(m, epochs))
    body = f"<table>{rows}</table>" + (
        '<p class="note">Two test ELBOs can appear above and differ: this report\'s own, on '
        f"the first {m['n']} test examples with fresh draws of z (seed {seed}), and the one "
        "training printed, from its last evaluation of the whole test set with the draws "
        "of z made then. Both estimate the same mean; they differ by sampling noise (the "
        "± is one standard error) and by the examples included.</p>")
    if m.get("kl_per_dim"):
        body += _img_tag(_figure_png(_bar_chart(m["kl_per_dim"], "KL (nats)")), "KL per dimension")
    body += _img_tag(_figure_png(_bar_chart(m["latent_variance"], "Var_x E_q[z_u]", 0.01)),
                     "variance of latent means")
    sections.append(_section("metrics", "Metrics", body))
    for key, title, body in _pictures(model, x, labels, m, seed):
        sections.append(_section(key, title, body))
    title = f"varfam run {Path(run_dir).name}"
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            + "\n".join(sections) + "\n</body></html>\n")


def write_report(
    run_dir: str | Path,
    *,
    data: str | Dataset | None = None,
    iw: int = 100,
    limit: int | None = 500,
    seed: int = 0,
    record: bool = True,
    model: VAE | None = None,
) -> Path:
    """Measure a run and write ``RUN/report.html``; returns its path.

    ``data`` is another dataset (name, path or :class:`~varfam.data.Dataset`) to
    evaluate on instead of the run's own. The metrics use ``iw`` importance samples
    on the first ``limit`` test examples and, with ``record``, are appended to
    ``metrics.jsonl`` as an eval line (``"source": "report"``). ``model``: the run's
    model already in memory (as saved), instead of loading it from the folder again.
    """
    from varfam.evaluation.bounds import evaluate
    from varfam.runs.folder import open_run, run_eval_data

    run_dir = Path(run_dir)
    if model is None:
        model, cfg = open_run(run_dir)
    else:
        cfg = load_run_config(run_dir)
    ds = run_eval_data(cfg, data)
    m = evaluate(model, ds, iw=iw, limit=limit, seed=seed)
    if record:
        name = data if isinstance(data, str) else (cfg.data.source if data is None else ds.name)
        append_eval_line(run_dir, m, source="report", data=name, limit=limit)
    x = ds.test[:limit] if limit else ds.test
    labels = ds.test_labels[:limit] if (limit and ds.test_labels is not None) else ds.test_labels
    page = render_report(run_dir, model, cfg.to_dict(), x, labels, m, seed=seed)
    write_text_atomic(run_dir / REPORT, page)
    return run_dir / REPORT


# ---------------------------------------------------------------- comparing runs
def _with_options(name: str, options: dict[str, Any]) -> str:
    if not options:
        return name
    return f"{name} ({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})"


def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """Key configuration and metrics of a run: last test ELBO and its latest eval line."""
    cfg = load_run_config(run_dir)
    epochs, evals = read_metrics(run_dir)
    last, ev = (epochs[-1] if epochs else {}), (evals[-1] if evals else {})
    scored = [r for r in epochs if "test_elbo" in r]  # with eval_every > 1 not every epoch
    secs = [r["epoch_seconds"] for r in epochs if "epoch_seconds" in r]
    return {
        "run": str(run_dir),
        "family": _with_options(cfg.model.family, cfg.model.family_options),
        "prior": _with_options(cfg.model.prior, cfg.model.prior_options),
        "likelihood": _with_options(cfg.model.likelihood, cfg.model.likelihood_options),
        "objective": (_with_options(cfg.train.objective, cfg.train.objective_options)
                      if cfg.train_recorded else None),  # a model saved without training
        "latent_dim": cfg.model.latent_dim,
        "epochs": last.get("epoch"),
        "test_elbo": scored[-1]["test_elbo"] if scored else None,
        "log_likelihood": ev.get("log_likelihood"),
        "log_likelihood_se": ev.get("log_likelihood_se"),
        "iw": ev.get("iw"),
        "eval_n": ev.get("n"),
        "inference_gap": ev.get("inference_gap"),
        "active_units": ev.get("active_units"),
        "probe_accuracy": ev.get("probe_accuracy"),
        "seconds_per_epoch": sum(secs) / len(secs) if secs else None,
    }


_COLUMNS = [
    ("run", "run"), ("family", "family"), ("prior", "prior"), ("likelihood", "likelihood"),
    ("objective", "objective"), ("latent_dim", "D"), ("epochs", "epochs"),
    ("test_elbo", "test ELBO"), ("log_likelihood", "log p(x) (IS)"), ("iw", "K"),
    ("inference_gap", "gap"), ("active_units", "AU"), ("probe_accuracy", "probe acc"),
    ("seconds_per_epoch", "s/epoch"),
]


def comparison_table(summaries: list[dict[str, Any]], fmt: str = "markdown") -> str:
    """The summaries as a markdown table (``fmt="markdown"``) or CSV (``fmt="csv"``)."""
    if fmt == "csv":
        buf = io.StringIO()
        keys = [k for k, _ in _COLUMNS] + ["log_likelihood_se", "eval_n"]
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for s in summaries:
            writer.writerow({k: "" if s.get(k) is None else s[k] for k in keys})
        return buf.getvalue()
    lines = ["| " + " | ".join(h for _, h in _COLUMNS) + " |",
             "|" + "|".join("---" for _ in _COLUMNS) + "|"]
    for s in summaries:
        cells = []
        for key, _ in _COLUMNS:
            v = s.get(key)
            if key == "log_likelihood":
                cells.append(_fmt(v, se=s.get("log_likelihood_se")))
            elif key == "probe_accuracy":
                cells.append(_fmt(v, 3))
            else:
                cells.append(_fmt(v).replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(run_dirs: list[str | Path], path: str | Path) -> Path:
    """Test ELBO curves of several runs against epoch and wall time, in one PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=90)
    for run in run_dirs:
        epochs, _ = read_metrics(run)
        ys = [r.get("test_elbo", math.nan) for r in epochs]
        label = Path(run).name
        axes[0].plot([r.get("epoch", i + 1) for i, r in enumerate(epochs)], ys, label=label)
        axes[1].plot([r.get("wall_time", math.nan) for r in epochs], ys, label=label)
    for ax, xlabel in zip(axes, ("epoch", "wall time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test ELBO (nats)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_figure_png(fig))
    return path
