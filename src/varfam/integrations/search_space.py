"""A hyper-parameter search space over a run's config, read from TOML; configs written as TOML.

The space has the sections of a run's config (``[model]``, ``[data]``, ``[train]``) and
one entry per config field that is searched; every other field keeps the base config's
value. An entry is

- a range: ``{low = 1e-4, high = 1e-2, log = true}`` (a float field), ``{low = 2, high =
  32, step = 2}`` (an int field; ``step`` or ``log``, not both);
- a list of choices: ``family = ["diagonal", "iaf"]``, ``hidden = [[256], [512, 256]]``,
  ``binarize = ["static", "dynamic"]``;
- for a part's options (``family_options``, ``prior_options``, ``likelihood_options``,
  ``objective_options``, ``arch_options``) a table of options, each a range or a list:
  ``objective_options.beta = {low = 0.5, high = 2.0}``; options that only one part takes
  go under its name, and are searched only in trials that pick it:
  ``family_options.iaf.flow_steps = {low = 1, high = 4}``.

Every name is checked before the first trial: an unknown section, field, part or
option, a range whose ends are out of order or out of the field's bounds, an empty list
of choices end in one :class:`~varfam.errors.VarfamError` line.

>>> from varfam.config import RunConfig
>>> base = RunConfig.from_dict({"data": {"source": "digits"}, "train": {"validation": 100}})
>>> space = SearchSpace.from_dict({"train": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
...                                "model": {"family": ["diagonal", "iaf"],
...                                          "family_options": {"iaf": {"flow_steps": [1, 2]}}}},
...                               base)
>>> [p.name for p in space.params]
['train.lr', 'model.family', 'model.family_options.iaf.flow_steps']
>>> cfg = space.apply(base, {"train.lr": 0.003, "model.family": "iaf",
...                          "model.family_options.iaf.flow_steps": 2})
>>> cfg.train.lr, cfg.model.family, cfg.model.family_options
(0.003, 'iaf', {'flow_steps': 2})
>>> import tomllib
>>> RunConfig.from_dict(tomllib.loads(config_toml(cfg))) == cfg
True
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from varfam.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    load_toml,
    toml_key,
    toml_value,
)
from varfam.errors import VarfamError, suggest

__all__ = ["OBJECTIVES", "SearchSpace", "Param", "config_toml", "PARTS"]

#: The study objectives: name → (direction, what it measures)
OBJECTIVES = {
    "elbo": ("maximize", "validation ELBO (nats) of the best epoch"),
    "log-likelihood": ("maximize", "IS log p(x) (nats) of the best weights on the validation set"),
    "time": ("minimize", "seconds of training steps"),
}

SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}

#: The part fields whose ``*_options`` a space may search: field → (section, registry name).
PARTS = {"family": ("model", "FAMILIES"), "prior": ("model", "PRIORS"),
         "likelihood": ("model", "LIKELIHOODS"), "arch": ("model", "ARCHITECTURES"),
         "objective": ("train", "OBJECTIVES")}

#: Fields no search may change: what the data decides, or what is not a setting of a model.
FIXED = {"model.data_shape": "the data sets it", "model.n_classes": "the data sets it",
         "model.classes": "the data sets it", "train.track": "trackers do not change a model",
         "data.source": "a study searches settings for one data set",
         "train.device": "a device does not change a model"}

RANGE_KEYS = ("low", "high", "step", "log")


@dataclass(frozen=True)
class Param:
    """One searched value: ``name`` (``train.lr``, ``model.family_options.flow_steps``, or
    ``model.family_options.iaf.flow_steps`` for an option searched only when ``model.family``
    is ``iaf``: then ``when = ("family", "iaf")``).

    ``kind`` is ``float``, ``int`` or ``categorical``; a range has ``low``, ``high``, ``step``
    and ``log``; a categorical its ``choices`` as stored in the study (numbers, strings,
    booleans; a list such as ``hidden = [512, 256]`` is stored as the string ``"512,256"``
    and a list option as JSON).
    """

    name: str
    section: str
    field: str
    option: str | None = None
    when: tuple[str, str] | None = None
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The entry as plain JSON (how a study records its space)."""
        if self.kind == "categorical":
            return {"choices": list(self.choices)}
        out: dict[str, Any] = {"kind": self.kind, "low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out

    def suggest(self, trial: Any) -> Any:
        """This entry's value in an optuna ``trial`` (as the study stores it)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high),  # type: ignore[arg-type]
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high),  # type: ignore[arg-type]
                                   step=self.step, log=self.log)

    def value(self, stored: Any) -> Any:
        """The config value of ``stored``, a value of the study (see the class doc)."""
        if self.kind == "categorical" and isinstance(stored, str) and self._is_list_field():
            return [int(w) for w in stored.split(",")]
        if self.kind == "categorical" and isinstance(stored, str) and stored.startswith("json:"):
            return json.loads(stored[5:])
        return stored

    def _is_list_field(self) -> bool:
        return self.option is None and _base_type(_hints(self.section)[self.field]) is tuple


class SearchSpace:
    """The searched entries of a space, checked against a base config (see the module doc)."""

    def __init__(self, params: list[Param]) -> None:
        if not params:
            raise VarfamError("the search space is empty; give at least one entry, e.g. "
                              "[train] lr = {low = 1e-4, high = 1e-2, log = true}")
        self.params = params

    # ------------------------------------------------------------ reading
    @classmethod
    def read(cls, path: str | Path, base: RunConfig) -> SearchSpace:
        """The space of a TOML file, checked against ``base``."""
        return cls.from_dict(load_toml(path), base, str(path))

    @classmethod
    def from_dict(cls, raw: Any, base: RunConfig, where: str = "search space") -> SearchSpace:
        """The space of ``raw`` (the TOML file's tables), checked against ``base``."""
        if isinstance(raw, SearchSpace):
            return raw
        if not isinstance(raw, dict):
            raise VarfamError(f"{where} must be a table of sections, got {type(raw).__name__}")
        params: list[Param] = []
        for section, table in raw.items():
            if section not in SECTIONS:
                raise VarfamError(f"{where}: unknown section [{section}]"
                                  f"{suggest(section, SECTIONS)}; the sections are "
                                  f"{', '.join(SECTIONS)}")
            if not isinstance(table, dict):
                raise VarfamError(f"{where}: [{section}] must be a table of fields")
            for key, spec in table.items():
                params += _entries(section, key, spec, base, raw, where)
        space = cls(sorted(params, key=lambda p: p.when is not None))  # parts before their options
        space._check(base, where)
        return space

    def describe(self) -> dict[str, Any]:
        """name → entry, plain JSON: what a study records to recognise its space."""
        return {p.name: p.describe() for p in self.params}

    # ------------------------------------------------------------ trials
    def suggest(self, trial: Any) -> dict[str, Any]:
        """The values of an optuna trial (``trial.suggest_*``), by name; an option of one part
        only when the trial's part is that one."""
        values: dict[str, Any] = {}
        parts: dict[str, Any] = {}
        for p in self.params:
            if p.when is not None:
                part, name = p.when
                if parts.get(part) != name:
                    continue
            values[p.name] = p.suggest(trial)
            if p.option is None and p.field in PARTS:
                parts[p.field] = values[p.name]
        return values

    def apply(self, base: RunConfig, values: dict[str, Any]) -> RunConfig:
        """``base`` with the searched ``values`` (by name) put in; a validated new config."""
        d = base.to_dict()
        by_name = {p.name: p for p in self.params}
        for name, stored in values.items():
            p = by_name[name]
            value = p.value(stored)
            if p.option is None:
                d[p.section][p.field] = value
            else:
                d[p.section][p.field] = {**d[p.section][p.field], p.option: value}
        return RunConfig.from_dict(d, "the trial's config")

    def part_choices(self, field: str, base: RunConfig) -> list[Any]:
        """The parts a trial may pick for ``field`` (``family`` …): its choices, or the base's."""
        for p in self.params:
            if p.field == field and p.option is None:
                return list(p.choices)
        section = PARTS[field][0]
        return [getattr(getattr(base, section), field)]

    # ------------------------------------------------------------ checks
    def _check(self, base: RunConfig, where: str) -> None:
        """Every part named exists, takes its options, and every extreme value validates."""
        from varfam import registry

        for p in self.params:
            if p.option is None and p.field in PARTS:
                reg = getattr(registry, PARTS[p.field][1])
                for choice in p.choices:
                    if choice is not None:
                        reg.get(choice)
        for p in self.params:
            if p.option is not None:
                part = p.field.removesuffix("_options")
                reg = getattr(registry, PARTS[part][1])
                names = [p.when[1]] if p.when else self.part_choices(part, base)
                for name in names:
                    if name is None:  # the family's natural prior: its options are free
                        continue
                    accepted = registry.accepted_options(reg.get(name))
                    if p.option not in accepted and not registry._takes_var_keywords(
                            reg.get(name)):
                        per_part = (f"; search it for one {part} only: {p.field}.{{name}}."
                                    f"{p.option}" if not p.when else "")
                        raise VarfamError(
                            f"{where}: {part} '{name}' takes no option '{p.option}' "
                            f"({p.name}); its options: {', '.join(accepted) or 'none'}"
                            + per_part.replace("{name}", str(name)))
            for probe in _probes(p):
                try:
                    self.apply(base, {p.name: probe})
                except VarfamError as e:
                    raise VarfamError(f"{where}: {p.name} = {toml_value(p.value(probe))} "
                                      f"does not make a valid config: {e}") from None


# ---------------------------------------------------------------- parsing one entry
def _hints(section: str) -> dict[str, Any]:
    return typing.get_type_hints(SECTIONS[section])


def _base_type(tp: Any) -> Any:
    """``int`` for ``int | None``, ``tuple`` for ``tuple[int, ...]`` …"""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        tp = [a for a in typing.get_args(tp) if a is not type(None)][0]
    return typing.get_origin(tp) or tp


def _entries(section: str, key: str, spec: Any, base: RunConfig, raw: dict,
             where: str) -> list[Param]:
    """The :class:`Param` of field ``key`` of ``section`` (several for a part's options)."""
    fields = {f.name: f for f in dataclasses.fields(SECTIONS[section]) if f.init}
    name = f"{section}.{key}"
    if key not in fields:
        tunable = [k for k in fields if f"{section}.{k}" not in FIXED]
        raise VarfamError(f"{where}: unknown field '{key}' in [{section}]{suggest(key, fields)}; "
                          f"its fields: {', '.join(tunable)}")
    if name in FIXED:
        raise VarfamError(f"{where}: {name} cannot be searched ({FIXED[name]}); set it in the "
                          "base config")
    tp = _base_type(_hints(section)[key])
    if key.endswith("_options"):
        return _option_entries(section, key, spec, raw, where)
    if tp is list or tp is dict:
        raise VarfamError(f"{where}: {name} cannot be searched; set it in the base config")
    return [_entry(name, section, key, None, None, spec, tp, where)]


def _option_entries(section: str, key: str, spec: Any, raw: dict, where: str) -> list[Param]:
    part = key.removesuffix("_options")
    if not isinstance(spec, dict) or not spec:
        raise VarfamError(f"{where}: {section}.{key} must be a table of options, e.g. "
                          f"{key}.NAME = {{low = 1, high = 4}}")
    part_section = PARTS[part][0]
    choices = raw.get(part_section, {}).get(part) if isinstance(raw.get(part_section), dict) \
        else None
    out = []
    for option, ospec in spec.items():
        per_part = (isinstance(ospec, dict) and not set(ospec) & set(RANGE_KEYS)
                    and isinstance(choices, list) and option in choices)
        if per_part:
            for sub, sspec in ospec.items():
                out.append(_entry(f"{section}.{key}.{option}.{sub}", section, key, sub,
                                  (part, option), sspec, None, where))
        else:
            out.append(_entry(f"{section}.{key}.{option}", section, key, option, None, ospec,
                              None, where))
    return out


def _entry(name: str, section: str, field: str, option: str | None,
           when: tuple[str, str] | None, spec: Any, tp: Any, where: str) -> Param:
    """One range or list of choices; ``tp``: the field's type (``None`` for an option)."""
    at = f"{where}: {name}"
    if isinstance(spec, list):
        if not spec:
            raise VarfamError(f"{at} lists no choices; give at least one")
        choices = tuple(_choice(c, tp, at) for c in spec)
        if len(set(map(repr, choices))) != len(choices):
            raise VarfamError(f"{at} lists a choice twice: {toml_value(spec)}")
        return Param(name, section, field, option, when, "categorical", choices=choices)
    if not isinstance(spec, dict):
        raise VarfamError(f"{at} = {toml_value(spec)}: give a range {{low = …, high = …}} or "
                          "a list of choices (fixed values belong in the base config)")
    unknown = [k for k in spec if k not in RANGE_KEYS]
    if unknown:
        raise VarfamError(f"{at}: unknown key '{unknown[0]}' in the range"
                          f"{suggest(unknown[0], RANGE_KEYS)}; a range takes low, high, step, "
                          "log")
    if "low" not in spec or "high" not in spec:
        raise VarfamError(f"{at}: a range needs both low and high")
    low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
    for k, v in (("low", low), ("high", high), ("step", step)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v)):
            raise VarfamError(f"{at}: {k} must be a finite number, got {toml_value(v)}")
    if not isinstance(log, bool):
        raise VarfamError(f"{at}: log must be true or false, got {toml_value(log)}")
    if tp not in (None, int, float):
        raise VarfamError(f"{at}: a range needs a number field; give a list of choices")
    kind = "int" if tp is int or (tp is None and all(
        isinstance(v, int) for v in (low, high, step) if v is not None)) else "float"
    if kind == "int" and not all(isinstance(v, int) for v in (low, high, step) if v is not None):
        raise VarfamError(f"{at} is a whole number: low, high and step must be integers")
    if not low < high:
        raise VarfamError(f"{at}: low ({low}) must be below high ({high})")
    if step is not None and not step > 0:
        raise VarfamError(f"{at}: step must be positive, got {step}")
    if step is not None and log:
        raise VarfamError(f"{at}: a range takes step or log, not both")
    if log and not low > 0:
        raise VarfamError(f"{at}: a log range needs low > 0, got {low}")
    if step is not None and kind == "int" and (high - low) % step:
        raise VarfamError(f"{at}: high - low ({high - low}) must be a multiple of step ({step})")
    return Param(name, section, field, option, when, kind, low=low, high=high, step=step, log=log)


def _choice(c: Any, tp: Any, at: str) -> Any:
    """A choice as the study stores it (a number, string, boolean; lists as strings)."""
    if tp is tuple:  # hidden widths: [512, 256], 400 or "512,256"
        widths = [c] if isinstance(c, int) else c.split(",") if isinstance(c, str) else c
        try:
            ok = isinstance(widths, list) and all(int(w) >= 1 for w in widths) and widths
        except (TypeError, ValueError):
            ok = False
        if not ok or any(isinstance(w, bool) for w in widths):
            raise VarfamError(f"{at}: each choice is a list of widths such as [512, 256], "
                              f"got {toml_value(c)}")
        return ",".join(str(int(w)) for w in widths)
    if isinstance(c, (list, dict)):
        if tp is not None:
            raise VarfamError(f"{at}: a choice must be one value, got {toml_value(c)}")
        return "json:" + json.dumps(c, sort_keys=True)
    if tp is bool and not isinstance(c, bool):
        raise VarfamError(f"{at}: the choices are true or false, got {toml_value(c)}")
    return c


def _probes(p: Param) -> list[Any]:
    """Values that stand for the entry in the checks: its ends, or each choice."""
    if p.kind == "categorical":
        return list(p.choices)
    return [p.low, p.high]


# ---------------------------------------------------------------- writing TOML
def config_toml(cfg: RunConfig, header: str = "") -> str:
    """``cfg`` as the TOML file that ``varfam train --config`` reads back as ``cfg``.

    ``header``: comment lines put first. Only the fields that differ from their defaults
    are written (what the file needs to say); a field that is ``None`` where its default
    is not cannot be said in TOML and is refused.
    """
    d, defaults = cfg.to_dict(), RunConfig().to_dict()
    lines = [f"# {line}" for line in header.splitlines()]
    for section in SECTIONS:
        changed = {k: v for k, v in d[section].items() if v != defaults[section].get(k)}
        lines += ["", f"[{section}]"] if lines else [f"[{section}]"]
        for key, value in changed.items():
            if value is None:
                raise VarfamError(f"{section}.{key} is null, which a TOML file cannot say")
            lines.append(f"{toml_key(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"
