"""One registry that maps short names to the built-in parts.

Every kind of part (dataset, family, prior, likelihood, objective, architecture)
has a :class:`Registry`. Parts register themselves with a decorator::

    @FAMILIES.register("diagonal", "diagonal Gaussian (the textbook VAE)")
    class DiagonalGaussian(Family): ...

The command line, the config and ``varfam list`` all read these registries.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from varfam.errors import VarfamError, suggest

__all__ = [
    "Registry",
    "Entry",
    "DATASETS",
    "FAMILIES",
    "PRIORS",
    "LIKELIHOODS",
    "OBJECTIVES",
    "ARCHITECTURES",
    "SCORES",
    "SAMPLERS",
    "ALL_REGISTRIES",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered part: its short name, the class or factory, and a one-line description."""

    name: str
    target: T
    description: str
    reference: str = ""


class Registry(Generic[T]):
    """Short name → part, for one kind of part (``kind`` is e.g. ``"family"``)."""

    def __init__(self, kind: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        #: modules whose import registers the built-in parts, imported on the first read,
        #: so a registry is complete however little of varfam was imported before
        self._builtins = builtins
        self._loaded = not builtins

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # first: a module that reads this registry while loading
            for module in self._builtins:
                importlib.import_module(module)

    def register(self, name: str, description: str, reference: str = "") -> Callable[[T], T]:
        """Decorator that registers ``target`` under ``name``."""

        def decorate(target: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(name, target, description, reference)
            return target

        return decorate

    def get(self, name: str) -> T:
        """The part registered as ``name``; else a :class:`VarfamError` listing the known names."""
        self._load()
        try:
            return self._entries[name].target
        except KeyError:
            known = ", ".join(self.names())
            raise VarfamError(
                f"unknown {self.kind} '{name}'{suggest(name, self.names())}; known: {known}"
            ) from None

    def entry(self, name: str) -> Entry[T]:
        self.get(name)
        return self._entries[name]

    def build(self, name: str, /, *args: Any, options: dict[str, Any] | None = None,
              **kwargs: Any) -> Any:
        """Call the part ``name`` with ``args``/``kwargs`` plus user ``options``.

        ``options`` are checked against the part's signature so that a misspelt or
        foreign option ends in a clear :class:`VarfamError` instead of a TypeError.
        """
        target = self.get(name)
        options = dict(options or {})
        accepted = accepted_options(target)
        unknown = sorted(set(options) - set(accepted))
        if unknown and not _takes_var_keywords(target):
            hint = ", ".join(accepted) if accepted else "none"
            raise VarfamError(
                f"{self.kind} '{name}' takes no option {', '.join(repr(u) for u in unknown)}; "
                f"its options: {hint}"
            )
        return cast(Callable[..., Any], target)(*args, **kwargs, **options)

    def names(self) -> list[str]:
        self._load()
        return list(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        self._load()
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __len__(self) -> int:
        self._load()
        return len(self._entries)


def _signature_of(target: Any) -> inspect.Signature:
    return inspect.signature(target.__init__ if inspect.isclass(target) else target)


def accepted_options(target: Any) -> list[str]:
    """Keyword options a part takes (keyword-only parameters of its constructor)."""
    return [
        p.name
        for p in _signature_of(target).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def _takes_var_keywords(target: Any) -> bool:
    return any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in _signature_of(target).parameters.values()
    )


DATASETS: Registry = Registry("dataset", ("varfam.data",))
FAMILIES: Registry = Registry("family", ("varfam.families",))
# the sphere's and the categorical's priors live beside their families
PRIORS: Registry = Registry("prior", ("varfam.priors", "varfam.families"))
LIKELIHOODS: Registry = Registry("likelihood", ("varfam.likelihoods",))
OBJECTIVES: Registry = Registry("objective", ("varfam.objectives",))
ARCHITECTURES: Registry = Registry("architecture", ("varfam.nets", "varfam.nets.tabular"))
# anomaly scores over a trained model (varfam.score, varfam score RUN --method NAME)
SCORES: Registry = Registry("score", ("varfam.evaluation.scores",))
# what draws z after training (varfam sample RUN --sampler NAME)
SAMPLERS: Registry = Registry("sampler", ("varfam.samplers",))

ALL_REGISTRIES: dict[str, Registry] = {
    "datasets": DATASETS,
    "families": FAMILIES,
    "priors": PRIORS,
    "likelihoods": LIKELIHOODS,
    "objectives": OBJECTIVES,
    "architectures": ARCHITECTURES,
    "scores": SCORES,
    "samplers": SAMPLERS,
}
