"""A run's configuration for people: what differs from the defaults, and how to run it again.

:func:`differences` compares a run's ``config.json`` with the defaults of the config
dataclasses (:class:`~varfam.config.DataConfig`, :class:`~varfam.config.ModelConfig`,
:class:`~varfam.config.TrainConfig`), field by field. :func:`reproduction` turns the
fields a user set into the ``varfam train`` command that trains the same run again:

- the model fields that ``varfam train`` fills in from the data itself
  (:meth:`VAE.for_data <varfam.model.VAE.for_data>`: the data's shape, the classes, the
  classifier of semi-supervised data, the ``masked`` wrapper of a mask) are left out,
  because the data gives them again;
- every other field that differs from its default becomes a flag, as the command line
  is generated from the same dataclasses (a field's ``flag`` metadata, else
  ``--field-name``), and each option of a part becomes ``--family-option KEY=VALUE``
  (and likewise for the prior, likelihood and objective);
- what no flag can say (a table's columns, an architecture's options) is written out
  as a TOML file, and the command is ``varfam train --config run.toml``: the file holds
  exactly the fields that differ from the defaults.

>>> from varfam.config import RunConfig
>>> cfg = RunConfig.from_dict({"data": {"source": "digits"}, "model": {"latent_dim": 2},
...                            "train": {"epochs": 3, "objective_options": {"beta": 4}}})
>>> reproduction(cfg).command
'varfam train --data digits --latent-dim 2 --objective-option beta=4 --epochs 3'
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shlex
from dataclasses import dataclass
from typing import Any

from varfam.config import DataConfig, ModelConfig, RunConfig, TrainConfig, toml_key, toml_value
from varfam.reporting.markup import cell_table, copy_block, details, esc, value_html

__all__ = ["SECTIONS", "CHOSEN", "Difference", "differences", "chosen_from_data",
           "Reproduction", "reproduction", "toml_text", "configuration_html"]

#: The sections of a ``config.json``, in the order the page and the TOML file show them.
SECTIONS: tuple[tuple[str, type], ...] = (
    ("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))

#: The option dicts of the parts and the flag that sets one of their keys.
PART_OPTIONS = {"family_options": "--family-option", "prior_options": "--prior-option",
                "likelihood_options": "--likelihood-option",
                "objective_options": "--objective-option"}

#: Model fields that ``varfam train`` fills in from the data (``VAE.for_data``).
FROM_DATA = ("data_shape", "n_classes", "classes", "classifier")


@dataclass(frozen=True)
class Difference:
    """One field whose value is not its default: ``section.name = value`` (default ``default``)."""

    section: str
    name: str
    value: Any
    default: Any


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None  # pragma: no cover - every config field has a default


def _same(a: Any, b: Any) -> bool:
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731 - JSON reads tuples as lists
    return norm(a) == norm(b)


#: The field in which a section (``model``, ``train``) records the settings varfam chose;
#: bookkeeping, never a setting of its own.
CHOSEN = "chosen_from_data"


def _split_chosen(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(given, chosen)`` of one section of a config dict: the section without the
    settings varfam chose and without their record (:data:`CHOSEN`), and those settings
    with their values (an option of a part as ``OPTIONS.KEY``, e.g.
    ``objective_options.k``)."""
    given = dict(values)
    chosen: dict[str, Any] = {}
    for name in given.pop(CHOSEN, None) or []:
        if "." in name:
            options, key = name.split(".", 1)
            if key in (given.get(options) or {}):
                given[options] = dict(given[options])
                chosen[name] = given[options].pop(key)
        elif name in given:
            chosen[name] = given.pop(name)
    return given, chosen


def differences(cfg: RunConfig | dict[str, Any]) -> list[Difference]:
    """The fields of ``cfg`` (a :class:`RunConfig` or its ``to_dict()``) that differ from
    the defaults, section by section, in the dataclasses' order; the settings varfam
    chose (:func:`chosen_from_data`) are not among them."""
    d = cfg.to_dict() if isinstance(cfg, RunConfig) else cfg
    out = []
    for section, cls in SECTIONS:
        values = _split_chosen(d.get(section) or {})[0]
        for f in dataclasses.fields(cls):
            if f.init and f.name in values and not _same(values[f.name], _default(f)):
                out.append(Difference(section, f.name, values[f.name], _default(f)))
    return out


def chosen_from_data(cfg: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """The settings varfam chose for this run, ``section.name`` → value: the parts left
    unset (for the data or the family) and the training settings chosen from the data;
    empty for runs recorded before varfam kept track, whose values count as set."""
    d = cfg.to_dict() if isinstance(cfg, RunConfig) else cfg
    return {f"{section}.{name}": value for section, _ in SECTIONS
            for name, value in _split_chosen(d.get(section) or {})[1].items()}


# ---------------------------------------------------------------- running it again
@dataclass(frozen=True)
class Reproduction:
    """How to train a run again: ``command`` (one line for a shell) and, where flags
    cannot say everything, ``toml``: the ``run.toml`` the command reads. ``note`` says
    what was left to the data."""

    command: str
    toml: str | None
    note: str


def _as_given(cfg: RunConfig) -> dict[str, Any]:
    """``cfg`` as a user gave it to ``varfam train``: the model fields that the data fills
    in put back to their defaults (a table keeps its columns, which the file must hold)."""
    d = copy.deepcopy(cfg.to_dict())
    model, data = d["model"], d["data"]
    defaults = ModelConfig()
    for name in FROM_DATA:
        model[name] = getattr(defaults, name)
    if data.get("labelled") is not None:  # semi-supervised data makes the model M2
        model["condition"] = defaults.condition
    if model.get("likelihood") == "masked" and data.get("mask"):  # the mask wraps the base
        options = model.get("likelihood_options") or {}
        model["likelihood"] = options.get("base", defaults.likelihood)
        model["likelihood_options"] = dict(options.get("options") or {})
        model["arch_options"] = {k: v for k, v in (model.get("arch_options") or {}).items()
                                 if k != "masked"}
    return d


def _flag(f: dataclasses.Field) -> str:
    # the rule of varfam.cli.train's generated flags (a test parses every command made here)
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _option_value(value: Any) -> str | None:
    """VALUE of ``--x-option KEY=VALUE`` (read as JSON where it parses), or None if a
    flag cannot carry it (nested tables)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value
        return json.dumps(value)  # "1", "true": keep them strings
    if isinstance(value, dict) or (isinstance(value, (list, tuple))
                                   and any(isinstance(v, (dict, list, tuple)) for v in value)):
        return None
    return json.dumps(value)


def _flag_tokens(diffs: list[Difference]) -> list[str] | None:
    """The flags that set ``diffs``, or None where one of them has no flag."""
    fields = {(s, f.name): f for s, cls in SECTIONS for f in dataclasses.fields(cls)}
    tokens: list[str] = []
    for d in diffs:
        f = fields[(d.section, d.name)]
        if d.name in PART_OPTIONS:
            for key, value in d.value.items():
                text = _option_value(value)
                if text is None:
                    return None
                tokens += [PART_OPTIONS[d.name], f"{key}={text}"]
        elif not f.metadata.get("cli") or d.value is None:
            return None
        elif isinstance(d.value, bool):
            tokens.append(_flag(f) if d.value else "--no-" + _flag(f)[2:])
        elif isinstance(d.value, (list, tuple)):
            if not d.value:
                return None
            tokens += [_flag(f), ",".join(str(v) for v in d.value)]
        else:
            tokens += [_flag(f), str(d.value)]
    return tokens


def reproduction(cfg: RunConfig) -> Reproduction:
    """The ``varfam train`` command (and, where needed, the TOML file) that trains ``cfg``
    again; see the module doc. A model saved without a training config has none."""
    if not cfg.train_recorded:
        return Reproduction("", None, "This model was saved without a training "
                                      "configuration: there is no training to repeat.")
    given = _as_given(cfg)
    diffs = differences(given)
    derived = "The data's shape and classes are left to the data, as varfam train reads them."
    chosen = chosen_from_data(cfg)
    if chosen:
        derived += (f" So are the settings varfam chose ({', '.join(chosen)}): the same data "
                    "gives them again.")
    tokens = _flag_tokens(diffs)
    if tokens is not None:
        return Reproduction(shlex.join(["varfam", "train", *tokens]), None, derived)
    sections: dict[str, dict[str, Any]] = {}
    for d in diffs:
        sections.setdefault(d.section, {})[d.name] = d.value
    return Reproduction("varfam train --config run.toml", toml_text(sections),
                        derived + " Some settings have no flag (a table's columns, an "
                        "architecture's options): run.toml holds every setting that "
                        "differs from the defaults.")


# ---------------------------------------------------------------- TOML
def toml_text(sections: dict[str, dict[str, Any]]) -> str:
    """A TOML file with a ``[section]`` per entry of ``sections`` (``None`` values left out:
    TOML has no null, and a key left out takes its default)."""
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out += [f"{toml_key(k)} = {toml_value(v)}" for k, v in values.items() if v is not None]
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- the page's section
def _rows(diffs: list[Difference]) -> list[tuple[str, str, str]]:
    return [(esc(f"{d.section}.{d.name}"), value_html(d.value), value_html(d.default))
            for d in diffs]


def configuration_html(cfg_dict: dict[str, Any], cfg: RunConfig | None) -> str:
    """The configuration, folded: first what differs from the defaults (nested options as
    tables), then the command that trains the run again, then every field on demand."""
    if not cfg_dict:
        return '<p class="note">No configuration recorded.</p>'
    diffs = differences(cfg_dict)
    parts = []
    if diffs:
        parts.append("<h3>What differs from the defaults</h3>"
                     + cell_table(_rows(diffs), header=("setting", "this run", "default"),
                                  raw=True))
    else:
        parts.append('<p class="note">Every setting is the default.</p>')
    chosen = chosen_from_data(cfg_dict)
    if chosen:
        parts.append("<h3>Chosen from the data</h3>"
                     '<p class="note">Left unset, these were chosen for the data (or, a '
                     "prior, for the family) when the run started.</p>"
                     + cell_table([(esc(k), value_html(v)) for k, v in chosen.items()],
                                  header=("setting", "this run"), raw=True))
    if cfg is not None:
        again = reproduction(cfg)
        if again.command:
            parts.append("<h3>Train it again</h3>"
                         + copy_block("train-command", again.command, "Copy command"))
            if again.toml is not None:
                parts.append(copy_block("train-toml", again.toml, "Copy run.toml"))
        parts.append(f'<p class="note">{esc(again.note)}</p>')
    full = []
    for section, values in cfg_dict.items():
        if isinstance(values, dict):
            full += [(esc(f"{section}.{k}"), value_html(v)) for k, v in values.items()]
        else:
            full.append((esc(section), value_html(values)))
    parts.append(details(f"Every setting ({len(full)})", cell_table(full, raw=True),
                         key="all-settings"))
    return "\n".join(parts)
