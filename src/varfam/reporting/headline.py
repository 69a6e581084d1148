"""The headline card of a run's page: what it is, its numbers, a verdict, its first pictures.

- **What it is**: the data set and the four parts (family, prior, likelihood,
  objective) with their options, each linked to the papers its registry entry cites
  (a scholarly search for the reference, so the link works whatever the reference's
  form; nothing is fetched unless the reader clicks).
- **Its numbers**: the test ELBO and the importance-sampled log p(x) with its K and
  standard error (as :func:`varfam.evaluation.bounds.evaluate` measured them for the
  page), active units, bits/dim where the data is 8-bit-like images, the classifier's
  accuracy for a run with one; the training time and examples per second.
- **A verdict** where the numbers call for one (:func:`verdicts`): posterior collapse,
  a test ELBO still rising at the last epoch, one that fell after its best epoch.
- **Its pictures**: samples and reconstructions (for a table: real against generated
  marginals), passed in by the page.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from varfam.reporting.curves import best_epoch
from varfam.reporting.markup import esc, fmt, img

if TYPE_CHECKING:  # pragma: no cover
    from varfam.config import RunConfig
    from varfam.reporting.pictures import Picture

__all__ = ["Stat", "headline_stats", "verdicts", "part_links", "headline_html"]


@dataclass(frozen=True)
class Stat:
    """One number of the card: ``key`` (its ``data-metric``), a label, the value as text
    and a small note under it."""

    key: str
    label: str
    value: str
    note: str = ""


def headline_stats(m: dict[str, Any]) -> list[Stat]:
    """The card's numbers from :func:`~varfam.evaluation.bounds.evaluate`'s results ``m``."""
    given = "|y" if m.get("conditional") else ""
    stats = [Stat("test-elbo", "test ELBO (nats)", fmt(m.get("elbo"), se=m.get("elbo_se")),
                  f"{m.get('n')} test examples")]
    if m.get("log_likelihood") is not None:
        stats.append(Stat("log-likelihood", f"log p(x{given}) (nats)",
                          fmt(m["log_likelihood"], se=m.get("log_likelihood_se")),
                          f"importance sampled, K = {m.get('iw')}"))
    if given and m.get("marginal_log_likelihood") is not None:
        stats.append(Stat("marginal-log-likelihood", "log p(x), y summed out (nats)",
                          fmt(m["marginal_log_likelihood"],
                              se=m.get("marginal_log_likelihood_se")),
                          f"K = {m.get('iw')} per class"))
    if m.get("accuracy") is not None:
        stats.append(Stat("accuracy", "accuracy of q(y|x)", f"{100 * m['accuracy']:.1f} %",
                          f"{m.get('n')} test examples"))
    if m.get("active_units") is not None:
        stats.append(Stat("active-units", "active units", f"{m['active_units']} of "
                          f"{m.get('latent_dim')}", "Cov E_q[z] > 0.01"))
    bpd = m.get("log_likelihood_bpd") if m.get("log_likelihood_bpd") is not None \
        else m.get("elbo_bpd")
    if bpd is not None:
        what = "−log p(x)" if m.get("log_likelihood_bpd") is not None else "−ELBO"
        stats.append(Stat("bits-per-dim", f"{what} (bits/dim)", fmt(bpd, 3)))
    return stats


def verdicts(m: dict[str, Any], epochs: list[dict[str, Any]]) -> list[str]:
    """One line per thing a reader should know first (empty when nothing stands out)."""
    out = []
    active, d = m.get("active_units"), m.get("latent_dim")
    if isinstance(active, int) and isinstance(d, int) and d > 1 and active <= d // 2:
        out.append(f"posterior collapse: {active} of {d} latent units active (the others "
                   "carry no information about x)")
    scored = [r for r in epochs if isinstance(r.get("test_elbo"), (int, float))]
    if len(scored) >= 2:
        last, before = scored[-1]["test_elbo"], scored[-2]["test_elbo"]
        top = max(r["test_elbo"] for r in scored[:-1])
        if last > top and last - before > 0.05:
            out.append(f"the test ELBO was still rising at the last epoch (+{last - before:.2f} "
                       "nats since the evaluation before): more epochs would likely help")
    best = best_epoch(epochs)
    if best is not None and scored:
        epoch, value, what = best
        key = "validation_elbo" if what == "validation" else "test_elbo"
        final = [r[key] for r in epochs if isinstance(r.get(key), (int, float))][-1]
        if epoch < scored[-1].get("epoch", epoch) and value - final > 1.0:
            saved = " (the saved weights are epoch " + str(epoch) + "'s)" \
                if what == "validation" else ""
            out.append(f"the {what} ELBO peaked at epoch {epoch} ({value:.2f}) and fell to "
                       f"{final:.2f}: overfitting{saved}")
    skipped = sum(int(r.get("skipped_batches") or 0) for r in epochs)
    if skipped:
        out.append(f"{skipped} batches were skipped for a non-finite loss")
    return out


def _scholar(reference: str) -> str:
    return "https://scholar.google.com/scholar?q=" + urllib.parse.quote(reference)


def part_links(kind: str, name: str) -> str:
    """``name`` linked to the papers that ``kind``'s registry cites for it ("" if none)."""
    from varfam.registry import FAMILIES, LIKELIHOODS, OBJECTIVES, PRIORS

    registry = {"family": FAMILIES, "prior": PRIORS, "likelihood": LIKELIHOODS,
                "objective": OBJECTIVES}[kind]
    try:
        reference = registry.entry(name).reference
    except Exception:  # a part registered by user code that is not loaded here
        return ""
    refs = [r.strip() for r in reference.split(";") if r.strip()]
    return " ".join(f'<a href="{esc(_scholar(r))}" title="{esc(r)}">[{k + 1}]</a>'
                    for k, r in enumerate(refs))


def _options(options: dict[str, Any]) -> str:
    """A part's options in one line; a list (a table's columns) by its length."""
    text = ", ".join(f"{k}: {len(v)}" if isinstance(v, (list, tuple, dict)) else f"{k}={v}"
                     for k, v in sorted(options.items()))
    return f" ({esc(text)})" if text else ""


def _parts(cfg: RunConfig | None, model_cfg: dict[str, Any], data: str) -> str:
    model = model_cfg
    train = cfg.train if cfg is not None and cfg.train_recorded else None
    items = [("data", esc(data), "")]
    for kind in ("family", "prior", "likelihood"):
        name = model.get(kind)
        if name:
            items.append((kind, f"<b>{esc(name)}</b>{_options(model.get(kind + '_options') or {})}",
                          part_links(kind, name)))
    if train is not None and train.objective:
        items.append(("objective", f"<b>{esc(train.objective)}</b>"
                      f"{_options(train.objective_options)}",
                      part_links("objective", train.objective)))
    if model.get("latent_dim"):
        items.append(("latent", f"D = {model['latent_dim']}", ""))
    return '<p class="parts">' + " · ".join(
        f"{kind} {body}{(' ' + links) if links else ''}" for kind, body, links in items) + "</p>"


def _training_facts(epochs: list[dict[str, Any]]) -> str:
    if not epochs:
        return ""
    last = epochs[-1]
    speeds = [r["samples_per_s"] for r in epochs
              if isinstance(r.get("samples_per_s"), (int, float))]
    facts = [f"{last.get('epoch', len(epochs))} epochs"]
    if isinstance(last.get("wall_time"), (int, float)):
        facts.append(f"{last['wall_time']:.1f} s of training")
    if speeds:
        facts.append(f"{sum(speeds) / len(speeds):,.0f} examples/s")
    best = best_epoch(epochs)
    if best is not None and best[2] == "validation":
        facts.append(f"best validation ELBO at epoch {best[0]}")
    return f'<p class="facts" data-metric="training">trained {esc(", ".join(facts))}</p>'


def _value(text: str) -> str:
    """A number large, its ``± standard error`` small beside it."""
    value, _, se = text.partition(" ± ")
    return esc(value) + (f'<span class="se"> ± {esc(se)}</span>' if se else "")


def headline_html(m: dict[str, Any], epochs: list[dict[str, Any]], cfg: RunConfig | None,
                  model_cfg: dict[str, Any], data: str, pictures: list[Picture]) -> str:
    """The card: parts, numbers, training facts and verdicts on the left; ``pictures``
    (the first pictures to look at) on the right."""
    tiles = "".join(
        f'<div class="stat" data-metric="{esc(s.key)}"><dt>{esc(s.label)}</dt>'
        f"<dd>{_value(s.value)}" + (f"<br><small>{esc(s.note)}</small>" if s.note else "")
        + "</dd></div>" for s in headline_stats(m))
    lines = verdicts(m, epochs)
    verdict = ('<ul class="verdicts">' + "".join(f"<li>{esc(v)}</li>" for v in lines) + "</ul>"
               if lines else "")
    shots = []
    for p in pictures:
        if p.image is None:
            continue
        pixels = p.key not in ("marginals", "correlations", "latent-map")
        shots.append(f'<figure class="{"pixels" if pixels else "wide"}">'
                     + img(p.png(), p.alt, pixels=pixels, key=p.key)
                     + f"<figcaption><b>{esc(p.title)}</b>: {esc(p.note)}</figcaption></figure>")
    return ('<section id="headline" class="card headline" aria-label="headline">'
            f'<div>{_parts(cfg, model_cfg, data)}<dl class="stats">{tiles}</dl>'
            f"{_training_facts(epochs)}{verdict}</div>"
            f'<div class="shots">{"".join(shots)}</div></section>')
