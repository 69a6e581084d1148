"""Fetching the MNIST files from a list of mirrors, each checked against MD5 and SHA-256.

The files are the four gzipped IDX files of Y. LeCun, C. Cortes and C. J. C. Burges,
"The MNIST database of handwritten digits" (1998). A download goes to a temporary
file in the target folder and is renamed into place only after both checksums match,
so an interrupted or tampered download never leaves a file that looks complete.
Without a network every mirror fails and :func:`fetch` raises a one-line
:class:`VarfamError` that names the folder to put the files in by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from varfam.data.base import one_line
from varfam.errors import VarfamError

__all__ = ["MNIST_MIRRORS", "MNIST_CHECKSUMS", "default_cache", "fetch"]

#: Base URLs tried in order; a file's URL is the base plus its name.
MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: file name → (MD5, SHA-256) of the published gzipped files.
MNIST_CHECKSUMS: dict[str, tuple[str, str]] = {
    "train-images-idx3-ubyte.gz": (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "train-labels-idx1-ubyte.gz": (
        "d53e105ee54ea40749a09fcbcd1e9432",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "t10k-images-idx3-ubyte.gz": (
        "9fb629c4189551a2d022fa330f9573f3",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "ec29112dd5afa0611ce80d1b7f02629c",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}

_MAX_BYTES = 64 << 20  # the largest file is 9.9 MB; a mirror sending more is wrong
_CHUNK = 1 << 20


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/varfam/mnist``, or ``~/.cache/varfam/mnist``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "varfam" / "mnist"


def _download(url: str, target: Path, md5: str, sha256: str, timeout: float) -> None:
    """Fetch ``url`` into ``target`` atomically; ``OSError``/``ValueError`` on any failure."""
    h_md5, h_sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = 0
            while chunk := resp.read(_CHUNK):
                total += len(chunk)
                if total > _MAX_BYTES:
                    raise ValueError(f"more than {_MAX_BYTES >> 20} MiB")
                h_md5.update(chunk)
                h_sha.update(chunk)
                out.write(chunk)
        if h_md5.hexdigest() != md5 or h_sha.hexdigest() != sha256:
            raise ValueError("checksum mismatch")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _why(error: Exception) -> str:
    """A short reason: the cause inside a URLError, on one line, cut to 100 characters."""
    cause: object = error
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        cause = error.reason
    return (" ".join(str(cause).split()) or type(cause).__name__)[:100]


def fetch(names: list[str], folder: Path, *, timeout: float = 30.0) -> None:
    """Download each of ``names`` (keys of :data:`MNIST_CHECKSUMS`) into ``folder``.

    Mirrors are tried in the order of :data:`MNIST_MIRRORS`; the first whose file
    matches both checksums wins. When every mirror fails for a file, a
    :class:`VarfamError` names the folder to place the files in by hand.
    """
    by_hand = (
        f"without a network, put {', '.join(MNIST_CHECKSUMS)} in {folder} "
        "(or pass --data-dir FOLDER holding them)"
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VarfamError(f"cannot create {folder} for MNIST ({one_line(e)}); {by_hand}") from None
    for name in names:
        md5, sha256 = MNIST_CHECKSUMS[name]
        reasons = []
        for mirror in MNIST_MIRRORS:
            url = mirror + name
            try:
                _download(url, folder / name, md5, sha256, timeout)
                break
            except (OSError, ValueError, http.client.HTTPException) as e:
                reasons.append(f"{urllib.parse.urlsplit(url).netloc or url}: {_why(e)}")
        else:
            raise VarfamError(
                f"could not download MNIST file {name} ({'; '.join(reasons)}); {by_hand}"
            )
