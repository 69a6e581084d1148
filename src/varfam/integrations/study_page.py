"""The study page: one self-contained HTML file about an Optuna study of varfam runs.

``OUT/study.html`` (written by :func:`varfam.tune` at the end of each process's trials)
holds the study's settings, its trials ranked by the objective (each with its run folder
and what became of it), and Optuna's own plots drawn with matplotlib and embedded as PNG:
the optimization history, the intermediate validation ELBOs (what pruning saw), the
parameter importances, a parallel-coordinate plot and, for several objectives, the Pareto
front. A plot that cannot be drawn yet (importances need two complete trials) says why.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["write_study_page", "ranked_trials"]

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f3f3f3}img{max-width:100%}.note{color:#666}"""


def ranked_trials(study: Any) -> list[Any]:
    """Complete trials best first (by the first objective), then pruned, then the rest."""
    sign = 1.0 if study.directions[0].name == "MAXIMIZE" else -1.0
    done = sorted((t for t in study.trials if t.state.name == "COMPLETE"),
                  key=lambda t: -sign * t.values[0])
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    rest = [t for t in study.trials if t.state.name not in ("COMPLETE", "PRUNED")]
    return done + pruned + rest


def write_study_page(study: Any, path: str | Path, objectives: list[str], *,
                     storage: str = "") -> Path:
    """Write the page of ``study`` (whose objectives are named ``objectives``) to ``path``."""
    from varfam.runs.files import write_text_atomic

    path = Path(path)
    name = html.escape(study.study_name)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>study {name}</title>"
             f"<style>{_STYLE}</style></head><body>", f"<h1>Study {name}</h1>",
             _summary(study, objectives, storage), "<h2>Trials</h2>",
             _trial_table(study, objectives, path.parent)]
    for title, draw in _plots(study, objectives):
        parts.append(f"<h2>{html.escape(title)}</h2>{_figure(draw)}")
    parts.append("</body></html>")
    write_text_atomic(path, "\n".join(parts))
    return path


def _summary(study: Any, objectives: list[str], storage: str) -> str:
    from varfam.integrations.search_space import OBJECTIVES

    counts: dict[str, int] = {}
    for t in study.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    rows = [("storage", storage or "(in memory)"),
            ("objectives", "; ".join(f"{o}: {OBJECTIVES[o][0]} the {OBJECTIVES[o][1]}"
                                     for o in objectives)),
            ("sampler", type(study.sampler).__name__), ("pruner", type(study.pruner).__name__),
            ("trials", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none")]
    if len(objectives) == 1 and counts.get("complete"):
        best = study.best_trial
        rows.append(("best", f"trial {best.number}: {objectives[0]} {best.value:.4g}, "
                             f"config in best.toml"))
    elif counts.get("complete"):
        rows.append(("Pareto front", ", ".join(f"trial {t.number}" for t in study.best_trials)
                     + " (configs in pareto/)"))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def _trial_table(study: Any, objectives: list[str], folder: Path) -> str:
    names = sorted({k for t in study.trials for k in t.params})
    head = ["#", "trial", "state", *objectives, "test ELBO", "epochs", *names, "run folder"]
    rows = []
    for i, t in enumerate(ranked_trials(study), 1):
        state = t.state.name.lower()
        if state == "pruned":
            state += f" after epoch {t.user_attrs.get('pruned_after_epoch')}"
        values = list(t.values) if t.values else [None] * len(objectives)
        run = t.user_attrs.get("run_dir", "")
        link = Path(run).name if run else ""
        cells = [str(i), str(t.number), state, *map(_fmt, values),
                 _fmt(t.user_attrs.get("test_elbo")), _fmt(t.user_attrs.get("epochs")),
                 *(_fmt(t.params.get(n)) for n in names)]
        cells = [html.escape(c) for c in cells]
        cells.append(f"<a href='{html.escape(link)}/'>{html.escape(link)}</a>" if link else "")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
    return f"<table>{header}{''.join(rows)}</table>"


def _plots(study: Any, objectives: list[str]) -> list[tuple[str, Callable[[], Any]]]:
    """(title, function drawing the plot) for each plot of the page."""
    import optuna.visualization.matplotlib as vis

    first = objectives[0]
    target: dict[str, Any] = {}
    if len(objectives) > 1:  # plots of one value show the first objective
        target = {"target": lambda t: t.values[0], "target_name": first}
    plots: list[tuple[str, Callable[[], Any]]] = [
        ("Optimization history", lambda: vis.plot_optimization_history(study, **target)),
    ]
    if any(t.intermediate_values for t in study.trials):
        plots.append(("Validation ELBO per epoch (what pruning saw)",
                      lambda: vis.plot_intermediate_values(study)))
    plots += [
        ("Parameter importances", lambda: vis.plot_param_importances(study, **target)),
        ("Parallel coordinates", lambda: vis.plot_parallel_coordinate(study, **target)),
    ]
    if len(objectives) > 1:
        plots.append(("Pareto front", lambda: vis.plot_pareto_front(
            study, target_names=objectives)))
    return plots


def _figure(draw: Callable[[], Any]) -> str:
    """The plot as an embedded PNG, or a note saying why it is not drawn."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            drawn = draw()
    except Exception as e:  # noqa: BLE001 - Optuna's plots refuse studies in many ways
        plt.close("all")
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"<p class='note'>not drawn: {html.escape(why)}</p>"
    axes = drawn.flat[0] if hasattr(drawn, "flat") else drawn
    fig = axes.figure
    if not any(ax.has_data() for ax in fig.axes):
        plt.close(fig)
        return "<p class='note'>not drawn yet: no trial to show</p>"
    buf = io.BytesIO()
    fig.set_size_inches(8, 4.5)
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f"<img alt='plot' src='data:image/png;base64,{data}'>"
