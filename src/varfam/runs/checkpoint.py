"""Saving and loading runs: safetensors only, written atomically.

A run folder holds ``config.json``, ``model.safetensors`` (the weights) and,
while training, ``checkpoint.safetensors`` (weights, optimizer state, RNG states
and the epoch, in one file). Every file is written to a temporary name in the
same folder and renamed over the old one, so a kill at any moment leaves the
last complete file readable. Loading never unpickles anything.

One training at a time writes a run folder: :class:`RunLock` holds an
exclusive ``flock`` on ``.lock`` (which records the holder's PID) for as long as
the training runs and removes the file when it ends; the kernel releases the lock
when the process ends, even by SIGKILL, so a file left by a killed training locks
nothing. Every file gets ordinary permissions (``0o666`` less the umask).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from varfam.config import DataConfig, RunConfig, TrainConfig
from varfam.errors import VarfamError
from varfam.runs.files import CHECKPOINT, CONFIG, WEIGHTS, atomic_write, write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from varfam.model import VAE

__all__ = [
    "atomic_write",
    "write_text_atomic",
    "save_model",
    "load_model",
    "load_run_config",
    "save_checkpoint",
    "load_checkpoint",
    "RunLock",
    "CONFIG",
    "WEIGHTS",
    "CHECKPOINT",
]

LOCK = ".lock"


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_model(
    model: VAE,
    run_dir: str | Path,
    train_config: TrainConfig | None = None,
    data_config: DataConfig | None = None,
) -> None:
    """Write ``model.safetensors`` and ``config.json`` (config only if absent or given).

    Without ``train_config`` a new ``config.json`` records the model alone (no
    ``train`` or ``data`` section): it states what is known, never default training
    settings. With it, ``data_config`` says what the model trained on (``None``: data
    given in memory, recorded as ``source: null``).
    A model built without a :class:`~varfam.config.ModelConfig` (from user modules,
    not :meth:`VAE.build`) cannot be described by a config and is refused.
    """
    if model.config is None:
        raise VarfamError(
            "this model was not made by VAE.build, so config.json cannot describe it; "
            "save its state_dict with safetensors yourself"
        )
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / CONFIG
    if train_config is not None:
        data = data_config if data_config is not None else DataConfig(source=None)
        write_text_atomic(cfg_path, RunConfig(model=model.config, data=data,
                                              train=train_config).to_json())
    elif not cfg_path.exists():
        write_text_atomic(cfg_path, RunConfig.model_only(model.config).to_json())
    atomic_write(run_dir / WEIGHTS, lambda tmp: save_file(_contiguous(model.state_dict()), tmp))


def load_run_config(run_dir: str | Path) -> RunConfig:
    """Read and validate a run folder's ``config.json``."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        raise VarfamError(
            f"{run_dir} is a file, not a run folder; give the folder `varfam train` wrote "
            f"(it holds {CONFIG} and {WEIGHTS})"
        )
    if not run_dir.is_dir():
        raise VarfamError(f"run folder {run_dir} does not exist")
    if not (run_dir / CONFIG).is_file():
        raise VarfamError(
            f"{run_dir} is not a varfam run (no {CONFIG}); give the folder `varfam train` wrote"
        )
    return RunConfig.read(run_dir / CONFIG)


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return load_file(str(path)), metadata
    except FileNotFoundError:
        raise VarfamError(f"{path} does not exist") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise VarfamError(
            f"{path} is not a readable safetensors file ({str(e).splitlines()[0]}); "
            "varfam loads weights only from safetensors"
        ) from None


def _load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = (missing and f"missing {missing[:3]}") or (
            unexpected and f"unexpected {unexpected[:3]}"
        ) or f"shape of {wrong[:3]}"
        raise VarfamError(
            f"the weights in {path} do not match its config.json ({detail}); "
            "the run folder was edited or mixed with another run"
        )
    model.load_state_dict(state)


def load_model(run_dir: str | Path, map_location: str | torch.device = "cpu") -> VAE:
    """Rebuild the model of a run folder from ``config.json`` and ``model.safetensors``.

    ``run_dir`` may be a Hub run, ``hf://USER/REPO[@REVISION]``: it is downloaded
    into the Hugging Face cache first (:func:`varfam.runs.hub.download`).
    """
    from varfam.model import VAE
    from varfam.runs.hub import resolve_run

    run_dir = resolve_run(run_dir)
    cfg = load_run_config(run_dir)
    weights = run_dir / WEIGHTS
    if not weights.is_file():
        if (run_dir / CHECKPOINT).is_file():
            weights = run_dir / CHECKPOINT
        else:
            raise VarfamError(f"{run_dir} has no {WEIGHTS}; the run did not finish an epoch")
    model = VAE.build(cfg.model)
    state, _ = _read_safetensors(weights)
    if weights.name == CHECKPOINT:
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    _load_state(model, state, weights)
    return model.to(map_location).eval()


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: dict[str, torch.Tensor],
    info: dict[str, Any],
    average: dict[str, torch.Tensor] | None = None,
    auxiliary: Auxiliary | None = None,
) -> None:
    """Write weights, optimizer state, RNG states and ``info`` (JSON-able) to one file.

    ``average``: the state of a moving average of the weights, if training keeps one.
    ``auxiliary``: the objective's auxiliary modules and their optimizer (FactorVAE's
    discriminator), saved as ``auxiliary.*`` and ``auxiliary_optim.*`` beside the model's.
    """
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"average.{k}": v for k, v in (average or {}).items()})
    groups, plain_state = _optimizer_state(optimizer, "optim", tensors)
    tensors.update({f"rng.{k}": v for k, v in rng.items()})
    meta = {
        "info": json.dumps(info),
        "param_groups": json.dumps(groups),
        "optim_plain": json.dumps(plain_state),
    }
    if auxiliary is not None:
        modules, aux_optimizer = auxiliary
        tensors.update({f"auxiliary.{k}": v for k, v in modules.state_dict().items()})
        aux_groups, aux_plain = _optimizer_state(aux_optimizer, "auxiliary_optim", tensors)
        meta["auxiliary_param_groups"] = json.dumps(aux_groups)
        meta["auxiliary_optim_plain"] = json.dumps(aux_plain)
    atomic_write(path, lambda tmp: save_file(_contiguous(tensors), tmp, metadata=meta))


#: An objective's auxiliary modules and their optimizer (see ``Objective.auxiliary_modules``).
Auxiliary = tuple[torch.nn.Module, torch.optim.Optimizer]


def _optimizer_state(
    optimizer: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Put the optimizer's tensors into ``tensors`` as ``PREFIX.IDX.NAME``; return its
    parameter groups and its other (JSON-able) state."""
    opt = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for idx, entry in opt["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{name}"] = value
            else:
                plain_state.setdefault(str(idx), {})[name] = value
    return opt["param_groups"], plain_state


def _load_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str,
    groups: list[dict[str, Any]], plain: dict[str, dict[str, Any]],
) -> None:
    """The inverse of :func:`_optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith(prefix + "."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, entry in plain.items():
        state.setdefault(int(idx), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    average: Any = None,
    auxiliary: Auxiliary | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Restore ``model`` (and ``optimizer``) from a checkpoint; return (rng states, info).

    ``average`` (an object with ``load_state_dict``, e.g. a
    :class:`varfam.training.averaging.WeightAverage`) receives the saved moving average of the
    weights when the checkpoint has one; otherwise it is left as it is. ``auxiliary``: the
    objective's auxiliary modules and optimizer, restored from the checkpoint (which must
    hold them).
    """
    path = Path(path)
    tensors, meta = _read_safetensors(path)
    try:
        info = json.loads(meta["info"])
        groups = json.loads(meta["param_groups"])
        plain = json.loads(meta["optim_plain"])
    except (KeyError, json.JSONDecodeError):
        raise VarfamError(f"{path} is not a varfam checkpoint (its metadata is missing)") from None
    _load_state(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, path)
    if optimizer is not None:
        _load_optimizer(optimizer, tensors, "optim", groups, plain)
    if auxiliary is not None:
        modules, aux_optimizer = auxiliary
        if "auxiliary_param_groups" not in meta:
            raise VarfamError(
                f"{path} holds no state of the objective's auxiliary modules (it was written "
                "by another objective); start the training again without --resume"
            )
        _load_state(modules, {k[10:]: v for k, v in tensors.items()
                              if k.startswith("auxiliary.")}, path)
        _load_optimizer(aux_optimizer, tensors, "auxiliary_optim",
                        json.loads(meta["auxiliary_param_groups"]),
                        json.loads(meta["auxiliary_optim_plain"]))
    averaged = {k[8:]: v for k, v in tensors.items() if k.startswith("average.")}
    if average is not None and averaged:
        average.load_state_dict(averaged)
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    return rng, info


class RunLock:
    """An exclusive lock on a run folder while a training writes it (``with RunLock(dir):``).

    A second training of the same folder raises :class:`VarfamError` at once,
    naming the PID that holds the lock. Where ``fcntl`` is missing (Windows) the
    lock is a no-op.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise VarfamError(
                    f"run folder {self.path.parent} is being trained by another process "
                    f"(PID {holder}); wait for it to finish or choose another --out"
                ) from None
            if self._still_linked(fd):
                break
            os.close(fd)  # the holder released and removed this file meanwhile: try anew
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def _still_linked(self, fd: int) -> bool:
        """Whether ``self.path`` is still the file ``fd`` has open (not removed or replaced)."""
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def release(self) -> None:
        """Remove ``.lock`` and unlock it (a finished run keeps no lock file)."""
        if self.fd is not None:
            import fcntl

            if self._still_linked(self.fd):
                self.path.unlink()
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
