"""Hyper-parameter studies with Optuna: every trial a run folder, the study in Optuna's storage.

:func:`tune` (``varfam.tune``, ``varfam tune``) searches a :class:`~varfam.integrations.
search_space.SearchSpace` around a base :class:`~varfam.config.RunConfig`. Each trial is
one call of :func:`varfam.train_from_config` with the trial's config, writing a normal run
folder ``OUT/trial-NNNN`` (``varfam report``, ``eval``, ``compare OUT/trial-*`` and
``train --resume`` work on it) and a ``trial.json`` that says what became of the trial
(``complete``, ``pruned`` after epoch N, or ``failed`` with the error).

- **Objectives** (:data:`OBJECTIVES`): ``elbo``, the best validation ELBO of the run (the
  weights ``model.safetensors`` keeps; the base config must hold out validation examples,
  ``[train] validation = N``); ``log-likelihood``, the importance-sampled log p(x) of those
  weights on the validation examples (``iw`` draws); ``time``, the seconds of training
  steps. Several objectives make a multi-objective study whose result is the Pareto front.
- **Pruning**: :class:`~varfam.integrations.trial_callbacks.PruningCallback` reports each
  epoch's validation ELBO to the trial; when the pruner (``median`` or ``hyperband``) says
  so, training stops at the next epoch boundary, after that epoch's checkpoint. Optuna
  prunes single-objective studies only.
- **Storage**: the study lives in Optuna's storage, so that several processes, on one
  machine or several, share it by giving the same ``storage`` and ``study_name``: an RDB
  URL (default ``sqlite:///OUT/study.db``; ``postgresql://…``, ``mysql://…``) or
  ``journal:PATH``, Optuna's ``JournalFileBackend`` (a file on a shared file system).
  ``n_trials`` is the study's total: each process asks for trials until the study holds
  that many (complete, pruned or running; failed trials are replaced).
- **Output**: ``OUT/best.toml``, the best trial's config, which ``varfam train --config``
  takes as it is (``OUT/pareto/trial-NNNN.toml`` for each trial on a Pareto front), and
  ``OUT/study.html``, the study page (:mod:`varfam.integrations.study_page`).

Optuna is an optional dependency (``pip install 'varfam[tune]'``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from varfam.config import RunConfig
from varfam.errors import VarfamError, suggest
from varfam.integrations.search_space import OBJECTIVES, SearchSpace, config_toml

if TYPE_CHECKING:  # pragma: no cover
    import optuna

    from varfam.integrations.trial_callbacks import PruningCallback
    from varfam.training.callbacks import Callback
    from varfam.training.state import TrainResult

__all__ = ["tune", "OBJECTIVES", "PRUNERS", "SAMPLERS", "open_storage",
           "require_optuna", "PIP_LINE"]

PIP_LINE = "pip install 'varfam[tune]'"

PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "random")
#: What a time limit counts: wall time, or the CPU time of this process.
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}

#: What the study folder records, and the lock its processes take to ask for trials.
STUDY_FILE, ASK_LOCK = "study.json", ".tune.lock"


def require_optuna() -> Any:
    """The ``optuna`` module, or a :class:`VarfamError` with the pip line to install it."""
    try:
        import optuna
    except ImportError:
        raise VarfamError(f"hyper-parameter studies need Optuna: {PIP_LINE}") from None
    return optuna


# ==================================================================== the public entry point
def tune(
    base_config: RunConfig | str | Path,
    space: SearchSpace | dict[str, Any] | str | Path,
    *,
    n_trials: int = 20,
    time_limit: float | None = None,
    time_clock: str = "wall",
    storage: str | None = None,
    study_name: str | None = None,
    out: str | Path | None = None,
    objective: str | Sequence[str] = "elbo",
    sampler: Any = "tpe",
    pruner: Any = None,
    startup_trials: int | None = None,
    seed: int | None = None,
    iw: int = 100,
    report: bool = False,
    progress: bool = False,
    callbacks: Sequence[Callback] = (),
) -> optuna.Study:
    """Run (or join) a study that searches ``space`` around ``base_config``; the study.

    ``base_config``: a :class:`RunConfig` or a TOML file; it must hold out validation
    examples (``train.validation``), on which trials are measured and pruned. ``space``:
    a :class:`SearchSpace`, its TOML tables as a dict, or a TOML file.
    ``n_trials``: the study's total number of trials (over every process that shares it);
    ``time_limit``: minutes after which this process starts no new trial;
    ``time_clock``: what it counts, ``"wall"`` (default) time or ``"cpu"``, this
    process's CPU time (a budget that other work on a shared machine does not eat into,
    as in ``benchmarks/tune.py``).
    ``storage``: an RDB URL or ``journal:PATH`` (default ``sqlite:///OUT/study.db``);
    ``study_name`` (default: the name of ``out``, else ``"study"``); ``out``: the study
    folder (default ``studies/STUDY_NAME``). An existing study of that name is joined
    when its space, base config and objectives are the same, else refused.
    ``objective``: a name of :data:`OBJECTIVES` or several (a multi-objective study, e.g.
    ``("elbo", "time")``). ``sampler``: ``"tpe"``, ``"random"`` or an Optuna sampler;
    ``pruner``: ``"median"`` (the default for one objective), ``"hyperband"``, ``"none"``
    or an Optuna pruner; ``startup_trials``: trials before TPE models the results and the
    median pruner prunes (Optuna's defaults: 10 and 5); ``seed``: the sampler's seed
    (give each process of a shared study its own, or none). ``iw``: importance samples of
    the ``log-likelihood`` objective. ``report``: write each complete trial's pictures and
    ``report.html`` as ``varfam train`` does. ``progress``: one line per trial on stderr.
    ``callbacks``: more training callbacks for every trial.
    """
    optuna = require_optuna()
    with _quiet_optuna(optuna):
        return _tune(base_config, space, n_trials=n_trials, time_limit=time_limit,
                     time_clock=time_clock, storage=storage, study_name=study_name, out=out,
                     objective=objective, sampler=sampler, pruner=pruner,
                     startup_trials=startup_trials, seed=seed, iw=iw, report=report,
                     progress=progress, callbacks=callbacks)


@contextlib.contextmanager
def _quiet_optuna(optuna: Any) -> Iterator[None]:
    """Optuna's INFO lines (one per trial) off while a study runs: varfam prints its own."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def _tune(base_config: Any, space: Any, *, report: bool, progress: bool,
          callbacks: Sequence[Callback], **settings: Any) -> Any:
    study = Study.open(base_config, space, **settings)
    study.run(report=report, progress=progress, callbacks=callbacks)
    study.write_outputs(progress)
    return study.study


# ==================================================================== the study
@dataclass
class Study:
    """What one process of a study holds: the space, the base, the Optuna study, the folder."""

    base: RunConfig
    space: SearchSpace
    objectives: list[str]
    study: Any
    out: Path
    storage_url: str
    n_trials: int
    time_limit: float | None
    iw: int
    pruning: bool
    clock: Callable[[], float] = time.perf_counter
    started: float = field(init=False)  # the clock's reading when the study was opened
    last_error: str = ""

    def __post_init__(self) -> None:
        self.started = self.clock()

    @classmethod
    def open(cls, base_config: Any, space: Any, *, n_trials: int, time_limit: float | None,
             time_clock: str, storage: str | None, study_name: str | None, out: str | Path | None,
             objective: str | Sequence[str], sampler: Any, pruner: Any,
             startup_trials: int | None, seed: int | None, iw: int) -> Study:
        """Check every setting, open the storage, create or join the study (see :func:`tune`)."""
        optuna = require_optuna()
        base = RunConfig.from_toml(base_config) if isinstance(base_config, (str, Path)) \
            else base_config
        space = SearchSpace.read(space, base) if isinstance(space, (str, Path)) \
            else SearchSpace.from_dict(space, base)
        objectives = _objectives(objective)
        _check_numbers(n_trials, time_limit, iw, startup_trials)
        if time_clock not in CLOCKS:
            raise VarfamError(f"unknown time clock {time_clock!r}; choose from "
                              f"{', '.join(CLOCKS)}")
        if base.train.validation == 0:  # None: chosen from the data, checked in the trial
            from varfam.integrations.trial_callbacks import NO_VALIDATION

            raise VarfamError(NO_VALIDATION)
        name = study_name or (Path(out).name if out is not None else "study")
        folder = Path(out) if out is not None else Path("studies") / name
        pruner = _pruner(optuna, pruner, objectives, startup_trials)
        sampler = _sampler(optuna, sampler, startup_trials, seed)
        if storage is None:  # the default storage lives in the study folder
            _claim_folder(folder, name)
        url = storage or f"sqlite:///{folder / 'study.db'}"
        # the processes of one machine open (and may create) the storage one at a time
        with _file_lock(folder / ASK_LOCK) if folder.is_dir() else contextlib.nullcontext():
            opened = open_storage(url)
            _claim_folder(folder, name)
            study = _create(optuna, opened, name, objectives, sampler, pruner)
            _check_same_study(study, space, base, objectives, url)
        return cls(base, space, objectives, study, folder, url, n_trials, time_limit, iw,
                   pruning=not isinstance(pruner, optuna.pruners.NopPruner),
                   clock=CLOCKS[time_clock])

    # ------------------------------------------------------------ the trials
    def run(self, *, report: bool, progress: bool, callbacks: Sequence[Callback]) -> None:
        """Ask for trials and run them until the study holds ``n_trials`` (or time is up)."""
        failures = 0
        while not self._out_of_time():
            trial = self._ask()
            if trial is None:
                return
            state = self._run_trial(trial, report, progress, callbacks)
            failures = failures + 1 if state == "failed" else 0
            if failures >= 3:
                raise VarfamError(f"3 trials in a row failed (the last: {self.last_error}); "
                                  f"see {self.out}/trial-*/trial.json")

    def _out_of_time(self) -> bool:
        return self.time_limit is not None and \
            self.clock() - self.started >= 60.0 * self.time_limit

    def _ask(self) -> Any:
        """A new trial, or ``None`` when the study holds ``n_trials`` already.

        Processes on one machine (or a shared file system) take the study folder's lock to
        count and ask; a trial that another machine's process asked for meanwhile beyond the
        total is told failed at once, marked ``surplus``, and never run.
        """
        optuna = require_optuna()
        with _file_lock(self.out / ASK_LOCK):
            if len(_counted(self.study)) >= self.n_trials:
                return None
            trial = self.study.ask()
        ahead = [t.number for t in _counted(self.study) if t.number < trial.number]
        if len(ahead) >= self.n_trials:
            trial.set_user_attr("surplus", True)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return None
        return trial

    def _run_trial(self, trial: Any, report: bool, progress: bool,
                   callbacks: Sequence[Callback]) -> str:
        """Train the trial's config in its run folder and tell the study; its state."""
        optuna = require_optuna()
        from varfam.integrations.trial_callbacks import Measure, NoValidation, PruningCallback
        from varfam.training import TrainingInterrupted, train_from_config

        run_dir = self.out / f"trial-{trial.number:04d}"
        record = TrialRecord(self, trial, run_dir)
        try:
            values = self.space.suggest(trial)
            cfg = self.space.apply(self.base, values)
        except VarfamError as e:
            return record.failed(str(e), progress)
        trial.set_user_attr("run_dir", str(run_dir))
        record.write("running")
        prune = PruningCallback(trial) if self.pruning else None
        measure = Measure(self.objectives, self.iw)
        extra: list[Callback] = [*([prune] if prune else []), measure, *callbacks]
        if report:
            from varfam.reporting.callbacks import RunPictures, RunReport

            extra += [RunPictures(), RunReport()]
        try:
            result = train_from_config(cfg, out=run_dir, overwrite=False, callbacks=extra)
        except optuna.TrialPruned:
            return record.pruned(prune, progress)
        except TrainingInterrupted as e:
            record.failed(f"interrupted: {e}", progress)
            raise
        except NoValidation as e:
            record.failed(str(e), False)
            raise
        except VarfamError as e:
            return record.failed(str(e), progress)
        except BaseException as e:  # a programming error or Ctrl-C: the study says so, too
            record.failed(f"{type(e).__name__}: {e}", progress)
            raise
        if prune is not None and prune.pruned_after is not None:  # pruned at the last epoch
            return record.pruned(prune, progress)
        values_out = measure.values(result)
        finite = [v for v in values_out if v is not None and math.isfinite(v)]
        if len(finite) < len(values_out):
            return record.failed(f"the objective is not finite: {values_out}", progress)
        return record.complete(result, finite, progress)

    # ------------------------------------------------------------ what a study leaves
    def write_outputs(self, progress: bool) -> None:
        """``best.toml`` (or ``pareto/*.toml``) and ``study.html`` from the study as it is now."""
        from varfam.integrations.study_page import write_study_page
        from varfam.runs.files import write_text_atomic

        done = [t for t in self.study.trials if t.state.name == "COMPLETE"]
        if not done:
            if progress:
                print("no trial completed: no best config to write", file=sys.stderr)
        elif len(self.objectives) == 1:
            best = self.study.best_trial
            path = self.out / "best.toml"
            write_text_atomic(path, self.best_toml(best, path))
            if progress:
                print(f"best: trial {best.number}, {self.objectives[0]} {best.value:.3f}; "
                      f"its config: {self.out / 'best.toml'}", file=sys.stderr)
        else:
            front = {self.out / "pareto" / f"trial-{t.number:04d}.toml": t
                     for t in self.study.best_trials}
            for old in (self.out / "pareto").glob("trial-*.toml"):
                if old not in front:  # no longer on the front
                    old.unlink()
            for path, t in front.items():
                write_text_atomic(path, self.best_toml(t, path))
            if progress:
                print(f"Pareto front: {len(self.study.best_trials)} trials; their configs in "
                      f"{self.out / 'pareto'}", file=sys.stderr)
        write_study_page(self.study, self.out / "study.html", self.objectives,
                         storage=redact(self.storage_url))

    def best_toml(self, trial: Any, path: Path) -> str:
        """The trial's config as the TOML file ``path`` for ``varfam train --config``."""
        cfg = self.space.apply(self.base, trial.params)
        values = ", ".join(f"{o} {v:.4g}" for o, v in zip(self.objectives, trial.values))
        header = (f"trial {trial.number} of study '{self.study.study_name}' ({values})\n"
                  f"train it: varfam train --config {path} --out runs/NAME")
        return config_toml(cfg, header)


@dataclass
class TrialRecord:
    """Tells the study what became of a trial, writes ``trial.json`` and prints a line."""

    study: Study
    trial: Any
    run_dir: Path

    def write(self, state: str, **extra: Any) -> None:
        from varfam.runs.files import write_text_atomic

        info = {"study": self.study.study.study_name, "storage": redact(self.study.storage_url),
                "trial": self.trial.number, "state": state, "params": self.trial.params,
                "objectives": self.study.objectives,
                "process": f"{socket.gethostname()}:{os.getpid()}", **extra}
        write_text_atomic(self.run_dir / "trial.json", json.dumps(info, indent=2, default=str))

    def complete(self, result: TrainResult, values: list[float], progress: bool) -> str:
        s = result.state
        best = next((r for r in s.history if r["epoch"] == s.best_epoch), {})
        attrs = {"epochs": s.epoch, "best_epoch": s.best_epoch, "wall_time": s.wall_time,
                 "validation_elbo": s.best_validation, "test_elbo": best.get("test_elbo")}
        for k, v in attrs.items():
            self.trial.set_user_attr(k, v)
        self.study.study.tell(self.trial, values)
        self.write("complete", values=values, **attrs)
        if progress:
            shown = ", ".join(f"{o} {v:.3f}" for o, v in zip(self.study.objectives, values))
            print(f"trial {self.trial.number}: {shown} ({s.epoch} epochs, {s.wall_time:.1f} s) "
                  f"-> {self.run_dir}", file=sys.stderr)
        return "complete"

    def pruned(self, prune: PruningCallback | None, progress: bool) -> str:
        optuna = require_optuna()
        epoch = prune.pruned_after if prune is not None else None
        self.trial.set_user_attr("pruned_after_epoch", epoch)
        self.study.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED)
        last = prune.last if prune is not None else None
        self.write("pruned", pruned_after_epoch=epoch, validation_elbo=last,
                   note=f"stopped by the {type(self.study.study.pruner).__name__} after epoch "
                        f"{epoch}; the folder holds that epoch's checkpoint (continue it with "
                        f"varfam train --resume {self.run_dir})")
        if progress:
            print(f"trial {self.trial.number}: pruned after epoch {epoch} (validation ELBO "
                  f"{last:.3f}) -> {self.run_dir}", file=sys.stderr)
        return "pruned"

    def failed(self, error: str, progress: bool) -> str:
        optuna = require_optuna()
        self.trial.set_user_attr("error", error)
        self.study.study.tell(self.trial, state=optuna.trial.TrialState.FAIL)
        self.study.last_error = error
        self.write("failed", error=error)
        if progress:
            print(f"trial {self.trial.number} failed: {error}", file=sys.stderr)
        return "failed"


# ==================================================================== settings
def _objectives(objective: str | Sequence[str]) -> list[str]:
    names = objective.split(",") if isinstance(objective, str) else list(objective)
    names = [n.strip() for n in names]
    for n in names:
        if n not in OBJECTIVES:
            raise VarfamError(f"unknown objective '{n}'{suggest(n, OBJECTIVES)}; the objectives: "
                              f"{', '.join(OBJECTIVES)} (several, comma-separated: a Pareto front)")
    if not names or len(set(names)) != len(names):
        raise VarfamError(f"give each objective once, got {','.join(names)}")
    return names


def _check_numbers(n_trials: int, time_limit: float | None, iw: int,
                   startup: int | None) -> None:
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise VarfamError(f"the number of trials must be at least 1, got {n_trials}")
    if time_limit is not None and not time_limit > 0:
        raise VarfamError(f"the time limit must be positive (minutes), got {time_limit}")
    if iw < 1:
        raise VarfamError(f"the importance samples must be at least 1, got {iw}")
    if startup is not None and startup < 0:
        raise VarfamError(f"the startup trials must be 0 or more, got {startup}")


def _sampler(optuna: Any, sampler: Any, startup: int | None, seed: int | None) -> Any:
    if not isinstance(sampler, str):
        return sampler
    if sampler == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, **({"n_startup_trials": startup} if startup is not None else {}))
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise VarfamError(f"unknown sampler '{sampler}'{suggest(sampler, SAMPLERS)}; "
                      f"the samplers: {', '.join(SAMPLERS)}")


def _pruner(optuna: Any, pruner: Any, objectives: list[str], startup: int | None) -> Any:
    if pruner is None:
        pruner = "median" if len(objectives) == 1 else "none"
    if not isinstance(pruner, str):
        chosen = pruner
    elif pruner == "none":
        return optuna.pruners.NopPruner()
    elif pruner == "median":
        chosen = optuna.pruners.MedianPruner(
            **({"n_startup_trials": startup} if startup is not None else {}))
    elif pruner == "hyperband":
        chosen = optuna.pruners.HyperbandPruner(min_resource=1)
    else:
        raise VarfamError(f"unknown pruner '{pruner}'{suggest(pruner, PRUNERS)}; "
                          f"the pruners: {', '.join(PRUNERS)}")
    if len(objectives) > 1:
        raise VarfamError("Optuna prunes single-objective studies only: give one objective "
                          "or --pruner none")
    return chosen


# ==================================================================== storage and study
def redact(url: str) -> str:
    """``url`` without its password (what the study folder and page show)."""
    if url.startswith("journal:") or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL sqlalchemy cannot read is shown cut at the @
        return url.split("://", 1)[0] + "://***@" + url.rsplit("@", 1)[1]


def open_storage(url: str) -> Any:
    """Optuna's storage for ``url``: an RDB URL or ``journal:PATH``; a one-line error when it
    cannot be opened."""
    optuna = require_optuna()
    hint = ("give an RDB URL (sqlite:///study.db, postgresql://user@host/db, "
            "mysql://user@host/db) or journal:PATH")
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:").removeprefix("//"))
        try:
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except OSError as e:
            raise VarfamError(f"cannot open the storage {url}: {e.strerror or e}") from None
    if "://" not in url:
        raise VarfamError(f"--storage {url} is not a storage URL; {hint}")
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as e:  # noqa: BLE001 - sqlalchemy's and the drivers' many errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise VarfamError(f"cannot open the storage {redact(url)} ({first}); {hint}") from None


def _create(optuna: Any, storage: Any, name: str, objectives: list[str], sampler: Any,
            pruner: Any) -> Any:
    directions = [OBJECTIVES[o][0] for o in objectives]
    return optuna.create_study(storage=storage, study_name=name, directions=directions,
                               sampler=sampler, pruner=pruner, load_if_exists=True)


def _check_same_study(study: Any, space: SearchSpace, base: RunConfig, objectives: list[str],
                      url: str) -> None:
    """Record what the study searches, or check that a joined study searches the same."""
    here = {"varfam.space": space.describe(), "varfam.base": _plain(base.to_dict()),
            "varfam.objectives": objectives}
    attrs = study.user_attrs
    for key, value in here.items():
        if key not in attrs:
            study.set_user_attr(key, value)
    attrs = study.user_attrs
    where = f"study '{study.study_name}' in {redact(url)}"
    fix = "use another --study name (or the same settings)"
    if attrs["varfam.objectives"] != objectives:
        raise VarfamError(f"{where} optimizes {','.join(attrs['varfam.objectives'])}, not "
                          f"{','.join(objectives)}; {fix}")
    diff = _first_difference(attrs["varfam.space"], here["varfam.space"])
    if diff:
        raise VarfamError(f"{where} has another search space: {diff}; {fix}")
    diff = _first_difference(attrs["varfam.base"], here["varfam.base"])
    if diff:
        raise VarfamError(f"{where} has another base config: {diff}; {fix}")


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _first_difference(there: dict[str, Any], here: dict[str, Any], prefix: str = "") -> str:
    """The first key whose value differs, said as ``KEY is X there and Y here``."""
    for key in sorted(set(there) | set(here)):
        name = f"{prefix}{key}"
        if key not in here:
            return f"{name} is searched there, not here"
        if key not in there:
            return f"{name} is searched here, not there"
        a, b = there[key], here[key]
        if isinstance(a, dict) and isinstance(b, dict) and "choices" not in a and "low" not in a:
            inner = _first_difference(a, b, f"{name}.")
            if inner:
                return inner
        elif a != b:
            return (f"{name} is {json.dumps(a, sort_keys=True)} there and "
                    f"{json.dumps(b, sort_keys=True)} here")
    return ""


def _claim_folder(folder: Path, name: str) -> None:
    """The study folder holds this study's trials only."""
    from varfam.runs.files import write_text_atomic

    record = folder / STUDY_FILE
    if record.is_file():
        try:
            held = json.loads(record.read_text()).get("study")
        except (OSError, json.JSONDecodeError):
            held = None
        if held not in (None, name):
            raise VarfamError(f"--out {folder} holds the trials of study '{held}'; choose "
                              f"another --out for study '{name}'")
        return
    if folder.exists() and not folder.is_dir():
        raise VarfamError(f"--out {folder} is a file, not a folder; choose another --out")
    write_text_atomic(record, json.dumps({"study": name}) + "\n")


def _counted(study: Any) -> list[Any]:
    """The trials that count toward the total: complete, pruned, running or waiting."""
    keep = ("COMPLETE", "PRUNED", "RUNNING", "WAITING")
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in keep]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (blocking; a no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
