"""The dashboard: `/` and its static files, shipped in the package (web/static), with nothing from a CDN.

The page shell and its scripts hold no data, so they are open routes (web/auth.py): a browser navigating to `/`
sends no Authorization header. Every number the page shows it reads from the API with `fetch`, which carries
the read token the page asks for on a 401 (kept in the tab's sessionStorage, never in a URL).
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib import resources

from aiohttp import web

from web import params
from web.api import ApiView, HTTPProblem
from web.models import NoParams, StaticHeaders

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg|png|html|txt)$", re.ASCII)
CONTENT_TYPES = {
    "js": "text/javascript",
    "css": "text/css",
    "svg": "image/svg+xml",
    "png": "image/png",
    "html": "text/html",
    "txt": "text/plain",
}
# The page may run only its own scripts and talk only to this origin.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@cache
def _asset(name: str) -> tuple[bytes, str] | None:
    """A file of web/static and its ETag, or None; read once per process."""
    if not _NAME.match(name):
        return None
    file = resources.files("web").joinpath("static", name)
    if not file.is_file():
        return None
    body = file.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


def _serve(request: web.Request, name: str) -> web.Response:
    found = _asset(name)
    if found is None:
        raise HTTPProblem(404, f"no static file {name!r}")
    body, etag = found
    headers = {
        "ETag": etag,
        "Cache-Control": "no-cache",  # revalidated each load (a 304 when unchanged): an upgrade shows at once
        "Content-Security-Policy": _CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if params.header(request, StaticHeaders, "if_none_match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": CONTENT_TYPES[name.rsplit(".", 1)[1]]})


class Dashboard(ApiView):
    """`/`: the page shell."""

    async def get(self, request: web.Request) -> web.Response:
        params.read(request, NoParams)  # its state lives in the fragment (#/…); the query takes nothing
        return _serve(request, "index.html")


class Static(ApiView):
    """`/static/{name}`: the page's scripts, styles and icon."""

    async def get(self, request: web.Request, name: str) -> web.Response:
        return _serve(request, name)
