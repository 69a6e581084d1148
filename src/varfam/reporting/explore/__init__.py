"""The latent-space explorer: a local web page over a saved run (``varfam explore RUN``).

:class:`Explorer` computes (map, decodes, sliders, interpolations, prior draws);
:func:`make_server` / :func:`serve` expose it over HTTP with a JSON API and the
page in ``static/`` (plain HTML, JavaScript and CSS; no external assets).
"""

from __future__ import annotations

from varfam.reporting.explore.explorer import Explorer, image_payload, rgba_pixels
from varfam.reporting.explore.server import STATIC_FILES, ExplorerServer, make_server, serve

__all__ = [
    "Explorer",
    "ExplorerServer",
    "make_server",
    "serve",
    "image_payload",
    "rgba_pixels",
    "STATIC_FILES",
]
