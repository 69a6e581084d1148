"""Runs on the Hugging Face Hub: ``hf://USER/REPO[@REVISION]`` read as a run folder.

:func:`download` fetches a model repo's ``config.json``, ``model.safetensors`` and
``metrics.jsonl`` with ``huggingface_hub.snapshot_download`` into the standard
Hugging Face cache (``HF_HOME``) and returns the snapshot folder, which then loads
like any run folder. With ``HF_HUB_OFFLINE=1`` nothing is downloaded: the cached
snapshot is used, or a one-line :class:`VarfamError` says it is missing. Loading
reads only ``config.json`` and ``model.safetensors``; nothing is unpickled.

The cache is never written by varfam. A command that records into its run
(``varfam eval`` appends to ``metrics.jsonl``, ``varfam report`` writes
``report.html``) works on :func:`working_copy`: a folder under
``~/.cache/varfam/hub/`` that links the snapshot's weights and config and holds its
own copy of ``metrics.jsonl``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from varfam.errors import VarfamError
from varfam.runs.files import CONFIG, WEIGHTS
from varfam.runs.metrics import METRICS

__all__ = [
    "SCHEME",
    "HubRef",
    "is_hub_ref",
    "parse_ref",
    "download",
    "resolve_run",
    "working_copy",
    "resolve_command_runs",
]

SCHEME = "hf://"
#: What is downloaded: the model (all that loading reads) and its measurements.
PULLED = (CONFIG, WEIGHTS, METRICS)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubRef:
    """A model repo on the Hub and, optionally, a branch, tag or commit."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return SCHEME + self.repo_id + (f"@{self.revision}" if self.revision else "")


def is_hub_ref(run: Any) -> bool:
    """Whether ``run`` names a Hub run (``"hf://..."``) rather than a folder."""
    text = str(run)
    # Path("hf://a/b") collapses the double slash: accept that spelling from Path objects too
    return text.startswith(SCHEME) or (isinstance(run, Path) and text.startswith("hf:/"))


def parse_ref(ref: str | Path | HubRef) -> HubRef:
    """``hf://USER/REPO`` or ``hf://USER/REPO@REVISION`` → :class:`HubRef`."""
    if isinstance(ref, HubRef):
        return ref
    text = str(ref)
    body = text[len(SCHEME):] if text.startswith(SCHEME) else text[len("hf:/"):]
    repo, at, revision = body.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(_NAME.fullmatch(p) for p in parts) or (at and not revision):
        raise VarfamError(
            f"'{text}' is not a Hub model reference; write hf://USER/REPO or hf://USER/REPO@REVISION"
        )
    return HubRef(repo, revision or None)


def client() -> Any:
    """The ``huggingface_hub`` module, or a :class:`VarfamError` saying how to install it."""
    try:
        import huggingface_hub
    except ImportError:
        raise VarfamError(
            "Hugging Face Hub support needs huggingface_hub: pip install 'varfam[hub]'"
        ) from None
    return huggingface_hub


def offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub itself reads it once, at import)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def download(ref: str | Path | HubRef) -> Path:
    """The snapshot folder of a Hub run in the Hugging Face cache, downloaded if needed.

    Raises :class:`VarfamError` (one line) when the repo or revision does not exist,
    the Hub cannot be reached and the run is not cached, or the repo is not a
    varfam model.
    """
    ref = parse_ref(ref)
    hf = client()
    from importlib.metadata import version

    from huggingface_hub import utils as errors

    __version__ = version("varfam")

    is_offline = offline()
    try:
        folder = Path(hf.snapshot_download(
            ref.repo_id, revision=ref.revision, allow_patterns=list(PULLED),
            local_files_only=is_offline, library_name="varfam", library_version=__version__,
        ))
    except errors.RevisionNotFoundError:
        raise VarfamError(
            f"{ref}: the repo {ref.repo_id} has no revision '{ref.revision}'; "
            "check the branch, tag or commit after @"
        ) from None
    except (errors.RepositoryNotFoundError, errors.GatedRepoError):
        raise VarfamError(
            f"{ref}: no model repo {ref.repo_id} on the Hugging Face Hub, or it is private or "
            "gated (log in with `hf auth login` or set HF_TOKEN)"
        ) from None
    except errors.LocalEntryNotFoundError:
        if is_offline:
            raise VarfamError(
                f"{ref} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids "
                "downloading it; unset HF_HUB_OFFLINE or download it once online"
            ) from None
        raise VarfamError(
            f"cannot reach the Hugging Face Hub to download {ref}, and it is not in the "
            "cache; check the network connection"
        ) from None
    except errors.HfHubHTTPError as e:
        raise VarfamError(f"the Hugging Face Hub refused {ref}: {_first_line(e)}") from None
    _check_varfam_model(folder, ref)
    return folder


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _check_varfam_model(folder: Path, ref: HubRef) -> None:
    import json

    config = folder / CONFIG
    if not config.is_file():
        raise VarfamError(f"{ref} is not a varfam model (the repo has no {CONFIG})")
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError):
        data = None
    if not (isinstance(data, dict) and isinstance(data.get("model"), dict)):
        raise VarfamError(
            f"{ref} is not a varfam model (its {CONFIG} has no varfam 'model' section)"
        )
    if not (folder / WEIGHTS).is_file():
        raise VarfamError(f"{ref} has no {WEIGHTS}; push the run again with `varfam push`")


def resolve_run(run: str | Path) -> Path:
    """A run folder for ``run``: the folder itself, or a Hub run's cached snapshot."""
    return download(run) if is_hub_ref(run) else Path(run)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/varfam/hub``, or ``~/.cache/varfam/hub``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "varfam" / "hub"


def working_copy(ref: str | Path | HubRef) -> Path:
    """A run folder of a Hub run that commands may write into, leaving the cache as it is.

    ``~/.cache/varfam/hub/USER--REPO/COMMIT/`` links ``config.json`` and
    ``model.safetensors`` to the cached snapshot and holds a copy of its
    ``metrics.jsonl``: evaluations append there, reports are written there.
    """
    ref = parse_ref(ref)
    snapshot = download(ref)
    folder = cache_root() / ref.repo_id.replace("/", "--") / snapshot.name
    folder.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG, WEIGHTS):
        link, target = folder / name, snapshot / name
        if link.is_symlink() or link.exists():
            if link.resolve() == target.resolve():
                continue
            link.unlink()
        try:
            link.symlink_to(target)
        except OSError:  # no symbolic links here (some Windows set-ups): copy
            shutil.copyfile(target, link)
    if not (folder / METRICS).exists() and (snapshot / METRICS).is_file():
        shutil.copyfile(snapshot / METRICS, folder / METRICS)
    return folder


def resolve_command_runs(args: Any) -> None:
    """Replace the ``hf://`` RUN arguments of a parsed command by working copies (in place).

    Looks at ``args.run`` (every command that takes one RUN) and ``args.runs``
    (``varfam compare``).
    """
    run = getattr(args, "run", None)
    if isinstance(run, str) and is_hub_ref(run):
        args.run = str(working_copy(run))
    runs = getattr(args, "runs", None)
    if isinstance(runs, list):
        args.runs = [str(working_copy(r)) if is_hub_ref(r) else r for r in runs]
