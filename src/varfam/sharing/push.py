"""``varfam push``: a run folder uploaded to a Hugging Face Hub model repo in one commit.

What goes up: ``config.json`` and ``model.safetensors`` (all that loading needs),
``metrics.jsonl``, ``report.html`` and the pictures, plus a generated model card
``README.md`` (:mod:`varfam.sharing.card`). Checkpoints, lock files and anything else
in the folder stay on this machine. The token is the one ``huggingface_hub`` finds
(``HF_TOKEN``, or ``hf auth login``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from varfam.errors import VarfamError
from varfam.runs.checkpoint import load_run_config
from varfam.runs.files import CONFIG, WEIGHTS
from varfam.runs.hub import METRICS, client, offline, parse_ref
from varfam.sharing.card import PICTURES, model_card

__all__ = ["push", "pushed_files", "PUSHED", "CARD"]

CARD = "README.md"
#: The files of a run folder that a push uploads, when present.
PUSHED = (CONFIG, WEIGHTS, METRICS, "report.html", *PICTURES)
_NETWORK_PACKAGES = {"httpx", "httpx2", "requests", "urllib3", "socket", "ssl"}


def pushed_files(run_dir: str | Path) -> dict[str, Path]:
    """Path in the repo → local file, for the files of ``run_dir`` that a push uploads."""
    run_dir = Path(run_dir)
    return {name: run_dir / name for name in PUSHED if (run_dir / name).is_file()}


def _repo_id(repo: str) -> str:
    try:
        ref = parse_ref(repo if repo.startswith("hf://") else f"hf://{repo}")
    except VarfamError:
        raise VarfamError(
            f"'{repo}' is not a Hub repo id; push takes USER/REPO (e.g. alice/digits-vae), "
            "letters, digits, '.', '_' and '-' in each part"
        ) from None
    if ref.revision:
        raise VarfamError(f"give the branch of '{repo}' with --revision, not after @")
    return ref.repo_id


def _is_network_error(e: BaseException) -> bool:
    return isinstance(e, OSError) or any(
        c.__module__.split(".")[0] in _NETWORK_PACKAGES for c in type(e).__mro__
    )


def push(
    run_dir: str | Path,
    repo: str,
    *,
    private: bool = False,
    revision: str | None = None,
    license: str = "mit",
    token: str | None = None,
) -> str:
    """Upload ``run_dir`` to the model repo ``repo`` (``USER/REPO``); return the repo's URL.

    The repo is created if missing (``private`` applies then); ``revision`` names a
    branch, created from the main branch if missing. One commit carries every file.
    """
    hf = client()
    from importlib.metadata import version

    from huggingface_hub import constants
    from huggingface_hub import utils as errors

    __version__ = version("varfam")

    repo_id = _repo_id(repo)
    run_dir = Path(run_dir)
    load_run_config(run_dir)  # a run folder with a valid config.json
    if not (run_dir / WEIGHTS).is_file():
        raise VarfamError(f"{run_dir} has no {WEIGHTS}; push a run that finished an epoch")
    if offline():
        raise VarfamError("HF_HUB_OFFLINE=1 is set but pushing needs the network; unset it")
    token = token or hf.get_token()
    if not token:
        raise VarfamError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` "
            "(a token that may write to the repo)"
        )
    card = model_card(run_dir, repo_id, revision, license)
    operations: list[Any] = [
        hf.CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
        for name, path in pushed_files(run_dir).items()
    ]
    operations.append(hf.CommitOperationAdd(path_in_repo=CARD, path_or_fileobj=card.encode()))
    api = hf.HfApi(token=token, library_name="varfam", library_version=__version__)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        api.create_commit(repo_id, operations, revision=revision,
                          commit_message=f"varfam push of run {run_dir.resolve().name}")
    except errors.HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        hint = ("; use a token that may write to this repo (HF_TOKEN or `hf auth login`)"
                if status in (401, 403) else "")
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise VarfamError(f"the Hugging Face Hub refused the push to {repo_id}: {first}{hint}"
                          ) from None
    except Exception as e:
        if not _is_network_error(e):
            raise
        raise VarfamError(
            f"cannot reach the Hugging Face Hub to push to {repo_id} ({type(e).__name__}); "
            "check the network connection"
        ) from None
    return f"{constants.ENDPOINT}/{repo_id}" + (f"/tree/{revision}" if revision else "")
