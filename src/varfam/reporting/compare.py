"""Runs side by side (``varfam compare RUN RUN ...``): a table, a CSV, curves, one page.

- :func:`run_summary`: a run's parts, its last test ELBO, its latest bounds
  (``varfam eval`` or ``varfam report``), the sample quality of its best sampler and
  its disentanglement metrics where ``metrics.jsonl`` holds them;
- :func:`comparison_table`: the summaries as markdown or CSV (the sample-quality and
  disentanglement columns only where a run has them);
- :func:`plot_comparison`: the test ELBO curves in one PNG;
- :func:`comparison_page`: one self-contained HTML page (``--html FILE``): the numbers
  with the best of each column marked, the curves overlaid, the sample grids side by
  side and the settings that differ between the runs.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from varfam.reporting.configuration import CHOSEN
from varfam.reporting.curves import overlaid_curves
from varfam.reporting.factors import latest_factor_line
from varfam.reporting.markup import (
    cell_table,
    document,
    esc,
    fmt,
    img,
    section,
    toc,
    value_html,
)
from varfam.reporting.sampling import latest_quality
from varfam.runs.checkpoint import load_run_config
from varfam.runs.files import write_text_atomic
from varfam.runs.metrics import read_metrics

__all__ = ["run_summary", "comparison_table", "plot_comparison", "comparison_page",
           "write_comparison_page", "COLUMNS"]


def _with_options(name: str, options: dict[str, Any]) -> str:
    if not options:
        return name
    return f"{name} ({', '.join(f'{k}={v}' for k, v in sorted(options.items()))})"


def _likelihood(name: str, options: dict[str, Any]) -> str:
    """The likelihood as a comparison shows it: a table's columns as their number, other
    list-valued options left out."""
    columns = options.get("columns")
    shown = _with_options(name, {k: v for k, v in options.items() if not isinstance(v, list)})
    if not isinstance(columns, list):
        return shown
    rest = shown[len(name) + 2:-1] if shown != name else ""
    return f"{name} ({len(columns)} columns{', ' + rest if rest else ''})"


def _latest(lines: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The latest line that has a value for ``key`` (``{}`` if none has): a later
    ``varfam eval --iw 0`` (no log p(x)) does not hide an earlier log p(x)."""
    return next((r for r in reversed(lines) if r.get(key) is not None), {})


def _best_sampler(evals: list[dict[str, Any]]) -> dict[str, Any]:
    """The sample-quality numbers of the sampler with the lowest FD (not the floor)."""
    lines = [r for name, r in latest_quality(evals).items()
             if name != "floor" and isinstance(r.get("fd"), (int, float))]
    if not lines:
        return {}
    r = min(lines, key=lambda r: r["fd"])
    return {"sampler": r.get("sampler"), "fd": r.get("fd"), "kid": r.get("kid"),
            "precision": r.get("precision"), "recall": r.get("recall")}


def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """Key configuration and metrics of a run: its last test ELBO, its latest bounds (each
    number from the latest eval line that measured it: log p(x) with its K, n and gap
    from one line), its best sampler's sample quality and its disentanglement metrics
    (``None`` where not measured)."""
    cfg = load_run_config(run_dir)
    epochs, evals = read_metrics(run_dir)
    bounds = [r for r in evals if "elbo" in r]  # not the samples or factors lines
    last, ev = (epochs[-1] if epochs else {}), _latest(bounds, "log_likelihood")
    scored = [r for r in epochs if "test_elbo" in r]  # with eval_every > 1 not every epoch
    secs = [r["epoch_seconds"] for r in epochs if "epoch_seconds" in r]
    factors = latest_factor_line(evals) or {}
    return {
        "run": str(run_dir),
        "family": _with_options(cfg.model.family, cfg.model.family_options),
        "prior": _with_options(cfg.model.prior or "", cfg.model.prior_options),
        "likelihood": _likelihood(cfg.model.likelihood or "", cfg.model.likelihood_options),
        "objective": (_with_options(cfg.train.objective or "", cfg.train.objective_options)
                      if cfg.train_recorded else None),  # a model saved without training
        "latent_dim": cfg.model.latent_dim,
        "epochs": last.get("epoch"),
        "test_elbo": scored[-1]["test_elbo"] if scored else None,
        "log_likelihood": ev.get("log_likelihood"),
        "log_likelihood_se": ev.get("log_likelihood_se"),
        "iw": ev.get("iw"),
        "eval_n": ev.get("n"),
        "inference_gap": ev.get("inference_gap"),
        "active_units": _latest(bounds, "active_units").get("active_units"),
        "probe_accuracy": _latest(bounds, "probe_accuracy").get("probe_accuracy"),
        "accuracy": _latest(bounds, "accuracy").get("accuracy"),
        "seconds_per_epoch": sum(secs) / len(secs) if secs else None,
        **{k: None for k in ("sampler", "fd", "kid", "precision", "recall")},
        **_best_sampler(evals),
        "mig": factors.get("mig"),
        "dci_disentanglement": factors.get("dci_disentanglement"),
        "sap": factors.get("sap"),
        "factor_vae_score": factors.get("factor_vae_score"),
    }


#: (summary key, heading, digits, better: +1 higher, -1 lower, 0 not ranked)
COLUMNS: list[tuple[str, str, int, int]] = [
    ("run", "run", 0, 0), ("family", "family", 0, 0), ("prior", "prior", 0, 0),
    ("likelihood", "likelihood", 0, 0), ("objective", "objective", 0, 0),
    ("latent_dim", "D", 0, 0), ("epochs", "epochs", 0, 0), ("test_elbo", "test ELBO", 2, 1),
    ("log_likelihood", "log p(x) (IS)", 2, 1), ("iw", "K", 0, 0),
    ("inference_gap", "gap", 2, -1), ("active_units", "AU", 0, 0),
    ("probe_accuracy", "probe acc", 3, 1), ("seconds_per_epoch", "s/epoch", 2, -1),
]
#: Columns shown only where some run has them: the classifier, samples, disentanglement.
OPTIONAL_COLUMNS: list[tuple[str, str, int, int]] = [
    ("accuracy", "q(y|x) acc", 3, 1), ("sampler", "sampler", 0, 0), ("fd", "FD", 3, -1),
    ("kid", "KID", 4, -1), ("precision", "precision", 3, 1), ("recall", "recall", 3, 1),
    ("mig", "MIG", 3, 1), ("dci_disentanglement", "DCI", 3, 1), ("sap", "SAP", 3, 1),
    ("factor_vae_score", "FactorVAE", 3, 1),
]


def _columns(summaries: list[dict[str, Any]]) -> list[tuple[str, str, int, int]]:
    extra = [c for c in OPTIONAL_COLUMNS if any(s.get(c[0]) is not None for s in summaries)]
    return COLUMNS + extra


def _cell(s: dict[str, Any], key: str, digits: int) -> str:
    v = s.get(key)
    if key == "log_likelihood":
        return fmt(v, se=s.get("log_likelihood_se"))
    if isinstance(v, float):
        return fmt(v, digits)
    return fmt(v)


def comparison_table(summaries: list[dict[str, Any]], fmt: str = "markdown") -> str:
    """The summaries as a markdown table (``fmt="markdown"``) or CSV (``fmt="csv"``)."""
    columns = _columns(summaries)
    if fmt == "csv":
        buf = io.StringIO()
        keys = [c[0] for c in COLUMNS] + ["log_likelihood_se", "eval_n"] + [
            c[0] for c in columns[len(COLUMNS):]]
        writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for s in summaries:
            writer.writerow({k: "" if s.get(k) is None else s[k] for k in keys})
        return buf.getvalue()
    lines = ["| " + " | ".join(c[1] for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for s in summaries:
        cells = [_cell(s, key, digits if digits else 2).replace("|", "\\|")
                 for key, _, digits, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(run_dirs: list[str | Path], path: str | Path) -> Path:
    """Test ELBO curves of several runs against epoch and wall time, in one PNG."""
    from varfam.reporting.pictures import Picture

    fig = overlaid_curves({_name(r, run_dirs): read_metrics(r)[0] for r in run_dirs})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(Picture("curves", "", "", "", fig).png())
    return path


# ---------------------------------------------------------------- the page
def _name(run: str | Path, runs: list[str | Path]) -> str:
    """A run's short name: its folder's, or its path where two folders share a name."""
    names = [Path(r).name for r in runs]
    return Path(run).name if names.count(Path(run).name) == 1 else str(run)


def _best_cells(summaries: list[dict[str, Any]],
                columns: list[tuple[str, str, int, int]]) -> list[tuple[int, int]]:
    best = []
    for j, (key, _, _, better) in enumerate(columns):
        values = [(i, s[key]) for i, s in enumerate(summaries)
                  if isinstance(s.get(key), (int, float)) and math.isfinite(s[key])]
        if better and len(values) > 1:
            top = (max if better > 0 else min)(v for _, v in values)
            best += [(i, j) for i, v in values if v == top]
    return best


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"section.key": value}``, a part's options one level further (``section.key.option``;
    empty ones left out)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and prefix.count(".") < 2:
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(run_dirs: list[str | Path]) -> list[tuple[str, list[Any]]]:
    """The settings (``section.key``, options one level down) whose values are not the
    same in every run, with each run's value (``None`` where a run lacks it)."""
    flats = [_flat(load_run_config(r).to_dict()) for r in run_dirs]
    keys: list[str] = []
    for f in flats:  # the values matter, not whether varfam or the user chose them
        keys += [k for k in f if k not in keys and k != "version"
                 and not k.endswith(f".{CHOSEN}")]
    out = []
    for k in keys:
        values = [f.get(k) for f in flats]
        if any(v != values[0] for v in values[1:]):
            out.append((k, values))
    return out


def _sample_picture(run: str | Path) -> tuple[bytes | None, str]:
    """The run's samples (or a table's marginals) as PNG: its file, else drawn now."""
    run = Path(run)
    for name, what in (("samples.png", "samples"), ("marginals.png", "real against generated "
                                                                       "marginals")):
        if (run / name).is_file():
            return (run / name).read_bytes(), f"{what} ({name})"
    try:
        import torch

        from varfam.reporting.pictures import run_pictures
        from varfam.runs.folder import open_run
        from varfam.tables.report import is_table

        model, cfg = open_run(run)
        if is_table(model):
            return None, "no marginals.png in the run folder"
        empty = torch.zeros(0, *model.data_shape)
        picture = run_pictures(model, empty, keys=["samples"], seed=cfg.train.seed)[0]
        return picture.png(), "samples (drawn for this page)"
    except Exception as e:  # a page of what there is; the table says the rest
        return None, f"no samples: {str(e).splitlines()[0] if str(e) else type(e).__name__}"


def _html_table(summaries: list[dict[str, Any]], columns: list[tuple[str, str, int, int]],
                cls: str) -> str:
    rows = [[_cell(s, key, digits if digits else 2) for key, _, digits, _ in columns]
            for s in summaries]
    numeric = [bool(better) or key in ("latent_dim", "epochs", "iw", "active_units")
               for key, _, _, better in columns]
    return cell_table(rows, header=[c[1] for c in columns], numeric=numeric,
                      best=_best_cells(summaries, columns), cls=cls)


def comparison_page(run_dirs: list[str | Path]) -> str:
    """One self-contained HTML page comparing the runs (see the module doc)."""
    from varfam.reporting.pictures import Picture

    summaries = [run_summary(r) for r in run_dirs]
    names = [_name(r, run_dirs) for r in run_dirs]
    for s, name in zip(summaries, names):
        s["run"] = name
        s["model"] = " · ".join(str(s[k]) for k in ("family", "prior", "likelihood",
                                                    "objective") if s.get(k))
    columns = _columns(summaries)
    parts = ("family", "prior", "likelihood", "objective")
    main = [("run", "run", 0, 0), ("model", "family · prior · likelihood · objective", 0, 0)] + [
        c for c in columns if c[0] not in parts + ("run",) and c not in OPTIONAL_COLUMNS[1:]]
    more = [("run", "run", 0, 0)] + [c for c in columns if c in OPTIONAL_COLUMNS[1:]]
    table = _html_table(summaries, main, "bounds")
    if len(more) > 1:  # sample quality, disentanglement: a second table, not a wider one
        table += "<h3>Samples and disentanglement</h3>" + _html_table(summaries, more, "quality")
    note = ('<p class="note">Best of each column marked ★ (higher test ELBO, log p(x), '
            "accuracies, precision, recall and disentanglement scores; lower gap, seconds, FD "
            "and KID). log p(x) is each run's latest <code>varfam eval</code> or "
            "<code>varfam report</code> (K importance samples); the sample-quality columns are "
            "each run's best sampler by FD (<code>varfam eval --samples</code>).</p>")
    sections = [section("numbers", "Numbers", table + note)]
    curves = Picture("curves", "", "curves", "",
                     overlaid_curves({n: read_metrics(r)[0] for n, r in zip(names, run_dirs)}))
    sections.append(section("curves", "Training curves, overlaid",
                            img(curves.png(), "overlaid training curves", key="curves")
                            + '<p class="note">Test ELBO against epoch and against training '
                            "time, and the train loss; ★ marks a run's best validation epoch."
                            "</p>"))
    figures = []
    for name, run in zip(names, run_dirs):
        png, what = _sample_picture(run)
        body = (img(png, f"samples of {name}", pixels=True, key="samples")
                if png is not None else "")
        figures.append(f"<figure>{body}<figcaption><b>{esc(name)}</b>: {esc(what)}"
                       "</figcaption></figure>")
    sections.append(section("samples", "Samples, side by side",
                            f'<div class="grid">{"".join(figures)}</div>'))
    diffs = config_differences(run_dirs)
    if diffs:
        body = cell_table([[esc(k), *(value_html(v) for v in values)] for k, values in diffs],
                          header=["setting", *names], raw=True)
    else:
        body = '<p class="note">The runs have the same settings.</p>'
    sections.append(section("configuration", "Settings that differ", body))
    contents = toc([("numbers", "Numbers"), ("curves", "Curves"), ("samples", "Samples"),
                    ("configuration", "Settings")])
    return document(f"varfam: {len(run_dirs)} runs compared", contents + "\n".join(sections),
                    subtitle=", ".join(names))


def write_comparison_page(run_dirs: list[str | Path], path: str | Path) -> Path:
    """Write :func:`comparison_page` to ``path`` (atomically); returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, comparison_page(run_dirs))
    return path
