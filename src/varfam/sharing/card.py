"""The model card (``README.md``) that ``varfam push`` writes for a run.

YAML front matter for the Hub (``library_name: varfam``, tags, license), then
markdown: how to load the model, its parts and their papers, the training
configuration, the test metrics recorded in ``metrics.jsonl`` and the pictures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from varfam.runs.checkpoint import load_run_config

__all__ = ["model_card", "PICTURES"]

#: The pictures ``varfam train`` writes into a run folder, in the card's order.
PICTURES = ("samples.png", "reconstructions.png", "interpolation.png", "latent.png")

#: Training settings that describe the machine or the bookkeeping, not the model.
_MACHINE_SETTINGS = {"data_dir", "data_key", "device", "compile", "compile_mode",
                     "skip_nonfinite", "track", "track_dir", "track_uri"}


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        value = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _front_matter(tags: list[str], license: str) -> str:
    from huggingface_hub import ModelCardData

    data = ModelCardData(library_name="varfam", license=license, tags=tags)
    return f"---\n{data.to_yaml()}\n---\n"


def _parts(cfg: Any, summary: dict[str, Any]) -> str:
    from varfam import model as _model  # noqa: F401  (registers the built-in parts)
    from varfam import objectives as _objectives  # noqa: F401
    from varfam.registry import ARCHITECTURES, FAMILIES, LIKELIHOODS, OBJECTIVES, PRIORS

    m = cfg.model

    def paper(registry: Any, name: str | None) -> str:
        return registry.entry(name).reference if name in registry else ""

    rows = [
        ("variational family q(z\\|x)", summary["family"], paper(FAMILIES, m.family)),
        ("prior p(z)", summary["prior"], paper(PRIORS, m.prior)),
        ("likelihood p(x\\|z)", summary["likelihood"], paper(LIKELIHOODS, m.likelihood)),
        ("networks", f"{m.arch}, hidden widths {list(m.hidden)}", paper(ARCHITECTURES, m.arch)),
    ]
    if getattr(cfg, "train_recorded", True):
        rows.append(("objective", summary["objective"], paper(OBJECTIVES, cfg.train.objective)))
    body = "| part | name | paper |\n|---|---|---|\n" + "\n".join(
        "| " + " | ".join([part, _cell(name), _cell(ref)]) + " |" for part, name, ref in rows
    )
    shape = "×".join(str(s) for s in m.data_shape)
    return (f"Data of shape {shape}, {m.latent_dim} latent dimensions.\n\n{body}")


def _training(cfg: Any) -> str:
    if not getattr(cfg, "train_recorded", True):
        return "This model was saved without a record of its training."
    rows = []
    for f in dataclasses.fields(cfg.train):
        value = getattr(cfg.train, f.name)
        if f.name in _MACHINE_SETTINGS or value is None or value == {} or value == []:
            continue
        rows.append((f.name, value))
    return _table(("setting", "value"), rows)


def _nats(value: Any, se: Any = None) -> str | None:
    if value is None:
        return None
    return f"{value:.2f}" + (f" ± {se:.2f}" if se is not None else "")


def _metrics(summary: dict[str, Any]) -> str:
    ll = summary.get("log_likelihood")
    rows: list[tuple[Any, ...]] = [
        ("test ELBO after the last epoch (nats)", _nats(summary.get("test_elbo")))
    ]
    if ll is not None:
        k, n = summary.get("iw"), summary.get("eval_n")
        rows += [
            (f"log p(x), importance sampled with K = {k} on {n} test examples (nats)",
             _nats(ll, summary.get("log_likelihood_se"))),
            ("inference gap log p(x) − ELBO (nats)", _nats(summary.get("inference_gap"))),
            ("active units", f"{summary.get('active_units')} of {summary.get('latent_dim')}"),
        ]
    table = _table(("metric", "value"), rows)
    if ll is None:
        table += ("\n\nNo importance-sampled measurement was recorded: `varfam eval RUN` "
                  "before pushing adds log p(x) and the active units.")
    return table


def model_card(
    run_dir: str | Path, repo_id: str, revision: str | None = None, license: str = "mit"
) -> str:
    """The ``README.md`` for run folder ``run_dir`` pushed to ``repo_id`` (at ``revision``)."""
    from varfam import data as _data  # noqa: F401  (registers the named datasets)
    from varfam.registry import DATASETS
    from varfam.reporting.page import run_summary

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    summary = run_summary(run_dir)
    tags = ["vae", "varfam", cfg.model.family]
    trained = getattr(cfg, "train_recorded", True)
    if trained and cfg.data.source in DATASETS:
        tags.append(cfg.data.source)
    ref = f"hf://{repo_id}" + (f"@{revision}" if revision else "")
    shape = ", ".join(str(s) for s in cfg.model.data_shape)
    data = f", trained on `{cfg.data.source}`" if trained else ""
    pictures = [p for p in PICTURES if (run_dir / p).is_file()]
    sections = [
        _front_matter(tags, license),
        f"# {repo_id}\n",
        f"A variational autoencoder made with varfam{data}: variational family "
        f"`{cfg.model.family}`, prior `{cfg.model.prior}`, likelihood "
        f"`{cfg.model.likelihood}`. The files `config.json` and `model.safetensors` "
        "rebuild it; loading never unpickles anything.\n",
        "## How to load\n",
        f"```python\nimport varfam\nmodel = varfam.load(\"{ref}\")\n"
        f"images = model.sample(16)  # (16, {shape}) decoded draws from the prior\n```\n",
        f"Install with `pip install 'varfam[hub]'`. Every command that takes a run takes "
        f"the reference too, e.g. `varfam sample {ref} -n 64 -o samples.png`.\n",
        "## The parts\n",
        _parts(cfg, summary) + "\n",
        "## Training\n",
        _training(cfg) + "\n",
        "## Test metrics\n",
        _metrics(summary) + "\n",
    ]
    if pictures:
        sections.append("## Pictures\n")
        sections += [f"![{Path(p).stem}]({p})\n" for p in pictures]
    if (run_dir / "report.html").is_file():
        sections.append("The full report with training curves is `report.html` in this repo.\n")
    return "\n".join(sections)
