"""A throwaway read-only HTTP proxy that serves this machine's local pip indexes to image builds.

pip here may be configured with ``file://`` indexes and find-links folders, which a container build
cannot see. ``scripts/images.py`` rewrites each of them to ``http://<INDEX_HOST><path>`` and starts
this proxy on 127.0.0.1 (a free port); the build gets the proxy as ``HTTP_PROXY``, one of Docker's
predefined build arguments, which are kept out of the layer cache key and out of ``docker history``.
So the index URLs the Dockerfiles see never change between builds (the dependency layers stay
cached), and the port, which does change, is never recorded anywhere.

Remote (https) indexes go through it as well: ``http://<INDEX_HOST>/https/<host>/<path>`` is fetched
from ``https://<host>/<path>`` here, with this machine's CA bundle (pip's ``cert`` setting: a
machine behind a TLS-inspecting gateway trusts a CA the build's base image does not), and the
links of an index page are rewritten to come back through the proxy.

Plain-http requests to the Debian mirrors in DEBIAN_HOSTS are forwarded as they are: HTTP_PROXY
reaches every RUN of the build, `apt-get` among them (the images install libgomp1 and wget).

The proxy answers only for INDEX_HOST and DEBIAN_HOSTS, only inside the folders and for the hosts it was given:
it is not an open proxy. Directories without an ``index.html`` get a plain link listing (what
pip's find-links reads).
"""

from __future__ import annotations

import html
import os
import shutil
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

# A name that resolves nowhere (RFC 2606 ``.invalid``): only the proxy can answer for it.
INDEX_HOST = "portfolio-os-index.invalid"
DEBIAN_HOSTS = frozenset({"deb.debian.org", "security.debian.org"})


def _listing(folder: Path) -> bytes:
    links = "\n".join(
        f'<a href="{quote(p.name)}{"/" if p.is_dir() else ""}">{html.escape(p.name)}</a><br>'
        for p in sorted(folder.iterdir())
    )
    return f"<!DOCTYPE html><html><body>\n{links}\n</body></html>\n".encode()


def proxied(url: str) -> str:
    """The proxy URL of an https URL (``https://h/p`` -> ``http://INDEX_HOST/https/h/p``)."""
    return f"http://{INDEX_HOST}/https/{url.removeprefix('https://')}"


class _Handler(BaseHTTPRequestHandler):
    roots: tuple[Path, ...] = ()
    hosts: frozenset[str] = frozenset()
    tls: ssl.SSLContext | None = None

    def log_message(self, format: str, *args: object) -> None:
        return  # pip fetches thousands of files; the build log is enough

    def _resolve(self) -> Path | None:
        parts = urlsplit(self.path)
        if parts.hostname != INDEX_HOST:
            return None
        path = Path(os.path.normpath(unquote(parts.path) or "/"))
        return path if any(path == r or r in path.parents for r in self.roots) else None

    def _remote(self, body: bool) -> None:
        """Fetch https://<host>/<path> for an allowed host; rewrite the links of HTML pages."""
        rest = unquote(urlsplit(self.path).path).removeprefix("/https/")
        host = rest.split("/", 1)[0]
        if host not in self.hosts:
            self.send_error(HTTPStatus.FORBIDDEN)
            return
        query = urlsplit(self.path).query
        request = urllib.request.Request(
            "https://" + quote(rest) + (f"?{query}" if query else ""),
            headers={"Accept": "text/html", "User-Agent": "portfolio-os-index-proxy"},
        )
        try:
            upstream = urllib.request.urlopen(request, context=self.tls, timeout=120)
        except urllib.error.HTTPError as e:
            self.send_error(e.code)
            return
        with upstream:
            kind = upstream.headers.get("Content-Type", "application/octet-stream")
            if kind.startswith("text/html"):
                page = upstream.read().decode("utf-8", errors="replace")
                for allowed in self.hosts:
                    page = page.replace(f"https://{allowed}/", proxied(f"https://{allowed}/"))
                self._send(page.encode(), kind, body)
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", kind)
            if upstream.headers.get("Content-Length"):
                self.send_header("Content-Length", upstream.headers["Content-Length"])
            self.end_headers()
            if body:
                shutil.copyfileobj(upstream, self.wfile, 1 << 20)

    def _debian(self, body: bool) -> None:
        """Forward a plain-http request to a Debian mirror (apt verifies what it gets by signature)."""
        try:
            upstream = urllib.request.urlopen(self.path, timeout=120)
        except urllib.error.HTTPError as e:
            self.send_error(e.code)
            return
        with upstream:
            self.send_response(HTTPStatus.OK)
            for header in ("Content-Type", "Content-Length", "Last-Modified"):
                if upstream.headers.get(header):
                    self.send_header(header, upstream.headers[header])
            self.end_headers()
            if body:
                shutil.copyfileobj(upstream, self.wfile, 1 << 20)

    def _answer(self, body: bool) -> None:
        parts = urlsplit(self.path)
        if parts.scheme == "http" and parts.hostname in DEBIAN_HOSTS:
            self._debian(body)
            return
        if parts.hostname == INDEX_HOST and parts.path.startswith("/https/"):
            self._remote(body)
            return
        path = self._resolve()
        if path is None or not path.exists():
            self.send_error(HTTPStatus.NOT_FOUND if path is not None else HTTPStatus.FORBIDDEN)
            return
        if path.is_dir():
            if not self.path.endswith("/"):
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", self.path + "/")
                self.end_headers()
                return
            index = path / "index.html"
            data = index.read_bytes() if index.is_file() else _listing(path)
            self._send(data, "text/html", body)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        if body:
            with path.open("rb") as f:
                shutil.copyfileobj(f, self.wfile)

    def _send(self, data: bytes, kind: str, body: bool) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)


class IndexProxy:
    """Serve ``roots`` (absolute folders) as ``http://INDEX_HOST/<folder>`` and ``hosts`` (https) as
    ``http://INDEX_HOST/https/<host>/...`` through 127.0.0.1:<port>; ``cafile`` verifies the hosts."""

    def __init__(self, roots: Iterable[Path], hosts: Iterable[str] = (), cafile: str | None = None) -> None:
        attrs = {
            "roots": tuple(Path(r).resolve() for r in roots),
            "hosts": frozenset(hosts),
            "tls": ssl.create_default_context(cafile=cafile),
        }
        handler = type("Handler", (_Handler,), attrs)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The proxy's address, for HTTP_PROXY."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> IndexProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
