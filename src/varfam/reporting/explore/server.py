"""The explorer's local web server: the static page and a small JSON API.

Standard library only (:class:`http.server.ThreadingHTTPServer`); bound to
127.0.0.1 unless told otherwise. Routes:

====== ==================== ==========================================================
GET    ``/``                the page (``static/index.html``, ``explorer.js``, ``.css``)
GET    ``/api/info``        sizes, parts, slider order and ranges (:meth:`Explorer.info`)
GET    ``/api/map``         the test set's latent means on the map, labels, PCA mean/axes
GET    ``/api/example?index=I``  test example I: input, latent mean and its decode
POST   ``/api/decode``      ``{"z": [D numbers]}`` or ``{"point": [u, v]}`` → code and image
POST   ``/api/interpolate`` ``{"a": I, "b": J, "steps": 10}`` → the decoded strip
POST   ``/api/sample``      ``{"seed": S, "sampler": "gmm"}`` (both optional) → a draw
                            from the prior (or the sampler named) and its image
====== ==================== ==========================================================

For a run conditioned on labels, ``/api/decode`` and ``/api/sample`` also take
``"label"`` (a class index or name; default: the first test example's class), and
``/api/info`` lists the classes under ``condition``.

A bad request gets status 400 and ``{"error": "one line"}``; an unknown path 404.

>>> import torch, varfam, threading, json, urllib.request
>>> from varfam.reporting.explore import Explorer, make_server
>>> model = varfam.VAE.build(data_shape=(1, 8, 8), latent_dim=2, hidden=(16,))
>>> server = make_server(Explorer(model, torch.rand(10, 1, 8, 8)), port=0)
>>> threading.Thread(target=server.serve_forever, daemon=True).start()
>>> url = f"http://127.0.0.1:{server.server_address[1]}/api/info"
>>> json.load(urllib.request.urlopen(url))["latent_dim"]
2
>>> server.shutdown(); server.server_close()
"""

from __future__ import annotations

import errno
import json
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from varfam.errors import VarfamError
from varfam.reporting.explore.explorer import Explorer

__all__ = ["ExplorerServer", "make_server", "serve", "STATIC_FILES"]

#: URL path → (file in ``static/``, content type). Nothing else is served.
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
    "/explorer.css": ("explorer.css", "text/css; charset=utf-8"),
}
#: Largest request body accepted, bytes.
MAX_BODY = 1 << 20


def _static(name: str) -> bytes:
    return resources.files(__package__).joinpath("static", name).read_bytes()


class ExplorerServer(ThreadingHTTPServer):
    """A threading HTTP server that owns one :class:`Explorer`."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], explorer: Explorer, quiet: bool = True) -> None:
        self.explorer = explorer
        self.quiet = quiet
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"


class _Handler(BaseHTTPRequestHandler):
    server: ExplorerServer
    server_version = "varfam-explore"

    # ---------------------------------------------------------------- replies
    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._send(status, body, "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        if not self.server.quiet:
            super().log_message(format, *args)

    # ---------------------------------------------------------------- routes
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urlsplit(self.path)
        ex = self.server.explorer
        if url.path in STATIC_FILES:
            name, content_type = STATIC_FILES[url.path]
            self._send(HTTPStatus.OK, _static(name), content_type)
        elif url.path == "/api/info":
            self._json(HTTPStatus.OK, ex.info())
        elif url.path == "/api/map":
            self._json(HTTPStatus.OK, ex.map())
        elif url.path == "/api/example":
            query = parse_qs(url.query)
            text = query.get("index", [""])[0]
            if not text.isdigit():
                self._error(HTTPStatus.BAD_REQUEST, "give ?index=I, a test example index")
                return
            self._answer(lambda: ex.example(int(text)))
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such page: {url.path}")

    do_HEAD = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        ex = self.server.explorer
        routes = {
            "/api/decode": lambda b: ex.decode(z=b.get("z"), point=b.get("point"),
                                               label=b.get("label")),
            "/api/interpolate": lambda b: ex.interpolate(b.get("a"), b.get("b"),
                                                         b.get("steps", 10)),
            "/api/sample": lambda b: ex.sample(b.get("seed"), b.get("label"), b.get("sampler")),
        }
        if path not in routes:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")
            return
        body = self._body()
        if body is not None:
            self._answer(lambda: routes[path](body))

    def _body(self) -> dict[str, Any] | None:
        """The request's JSON object (``{}`` when empty), or None after replying 400."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._error(HTTPStatus.BAD_REQUEST, f"the body must be 0..{MAX_BODY} bytes of JSON")
            return None
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._error(HTTPStatus.BAD_REQUEST, "the body is not valid JSON")
            return None
        if not isinstance(body, dict):
            self._error(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
            return None
        return body

    def _answer(self, compute) -> None:
        try:
            payload = compute()
        except VarfamError as e:
            self._error(HTTPStatus.BAD_REQUEST, str(e))
            return
        self._json(HTTPStatus.OK, payload)


def make_server(
    explorer: Explorer, host: str = "127.0.0.1", port: int = 8000, quiet: bool = True
) -> ExplorerServer:
    """Bind a server for ``explorer`` (``port=0``: any free port); call ``serve_forever``."""
    try:
        return ExplorerServer((host, port), explorer, quiet=quiet)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise VarfamError(
                f"port {port} on {host} is in use; pass --port N (0 picks a free one)"
            ) from None
        if e.errno == errno.EACCES:
            raise VarfamError(
                f"no permission to listen on port {port}; pass --port N with N >= 1024"
            ) from None
        raise VarfamError(f"cannot listen on {host}:{port} ({e.strerror}); check --host") from None


def serve(run: str | Path, host: str = "127.0.0.1", port: int = 8000,
          limit: int | None = None, quiet: bool = True) -> None:
    """Open ``run``, serve its explorer until interrupted (Ctrl+C), then close the socket."""
    server = make_server(Explorer.from_run(run, limit=limit), host, port, quiet=quiet)
    print(f"varfam explorer for {run} at {server.url} (Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
