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

Distribution files fetched from those hosts (wheels and source archives: immutable once published,
and pip checks each one against the hash its index page names) are kept in a cache folder on this
machine (``cache_dir``; scripts/images.py passes ~/.cache/portfolio-os/wheels): every image build,
and every later run, reads a file from there after its first download, so each file crosses the
network once for all four images. Index pages change, so they are kept only in memory, for the
proxy's life (one ``make images`` run). ``IndexProxy.traffic`` counts what came from where.

Plain-http requests to the Debian mirrors in DEBIAN_HOSTS are forwarded as they are: HTTP_PROXY
reaches every RUN of the build, `apt-get` among them (the images install libgomp1 and wget).

The proxy answers only for INDEX_HOST and DEBIAN_HOSTS, only inside the folders and for the hosts it was given:
it is not an open proxy. Directories without an ``index.html`` get a plain link listing (what
pip's find-links reads).
"""

from __future__ import annotations

import hashlib
import html
import os
import shutil
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
import urllib.response
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote, unquote, urlsplit

# A name that resolves nowhere (RFC 2606 ``.invalid``): only the proxy can answer for it.
INDEX_HOST = "portfolio-os-index.invalid"
DEBIAN_HOSTS = frozenset({"deb.debian.org", "security.debian.org"})
# What a package index links to download (PEP 503 distribution files, PEP 658 metadata): cached on disk.
ARCHIVES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz", ".metadata")


@dataclass
class Traffic:
    """What one proxy served, by where it came from (scripts/images.py records it with the build times)."""

    local_files: int = 0  # from the local index folders
    local_bytes: int = 0
    fetched_files: int = 0  # downloaded from a remote index (then cached)
    fetched_bytes: int = 0
    fetch_s: float = 0.0  # time spent downloading them (threads overlap: not wall time)
    cached_files: int = 0  # read from the cache folder instead
    cached_bytes: int = 0
    pages_fetched: int = 0  # remote index pages downloaded
    pages_reused: int = 0  # asked again in the same run, served from memory
    page_fetch_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return {
                name: round(value, 1) if isinstance(value, float) else value
                for name, value in vars(self).items()
                if not name.startswith("_")
            }


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
    cache_dir: Path | None = None
    traffic: Traffic = Traffic()
    # One of each per proxy (IndexProxy makes the handler class): pages by URL, a lock per URL.
    pages: ClassVar[dict[str, tuple[str, bytes]]] = {}
    locks: ClassVar[dict[str, threading.Lock]] = {}
    locks_lock: threading.Lock = threading.Lock()

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
        url = "https://" + quote(rest) + (f"?{query}" if query else "")
        if self.cache_dir is not None and rest.endswith(ARCHIVES):
            self._archive(url, rest, body)
            return
        with self._lock_for(url):
            page = self.pages.get(url)
            if page is not None:
                self.traffic.add(pages_reused=1)
            else:
                started = time.monotonic()
                upstream = self._fetch(url)
                if upstream is None:
                    return
                with upstream:
                    kind = upstream.headers.get("Content-Type", "application/octet-stream")
                    if not kind.startswith("text/html"):
                        self._stream(upstream, kind, body)
                        return
                    text = upstream.read().decode("utf-8", errors="replace")
                for allowed in self.hosts:
                    text = text.replace(f"https://{allowed}/", proxied(f"https://{allowed}/"))
                page = self.pages[url] = (kind, text.encode())
                self.traffic.add(pages_fetched=1, page_fetch_s=time.monotonic() - started)
        self._send(page[1], page[0], body)

    def _fetch(self, url: str) -> urllib.response.addinfourl | None:
        """``url`` opened upstream; on an HTTP error the client gets its status and this returns None."""
        try:
            return self._open(url)
        except urllib.error.HTTPError as e:
            self.send_error(e.code)
            return None

    def _open(self, url: str) -> urllib.response.addinfourl:
        request = urllib.request.Request(url, headers={"Accept": "text/html", "User-Agent": "portfolio-os-index-proxy"})
        response: urllib.response.addinfourl = urllib.request.urlopen(request, context=self.tls, timeout=120)
        return response

    def _stream(self, upstream: urllib.response.addinfourl, kind: str, body: bool) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        if upstream.headers.get("Content-Length"):
            self.send_header("Content-Length", upstream.headers["Content-Length"])
        self.end_headers()
        if body:
            shutil.copyfileobj(upstream, self.wfile, 1 << 20)

    @contextmanager
    def _lock_for(self, key: str) -> Iterator[None]:
        """One download per URL at a time: a second build asking for it waits and reuses the first's."""
        with self.locks_lock:
            lock = self.locks.setdefault(key, threading.Lock())
        with lock:
            yield

    def _archive(self, url: str, rest: str, body: bool) -> None:
        """A distribution file, from the cache folder (downloaded into it the first time)."""
        assert self.cache_dir is not None
        name = rest.rsplit("/", 1)[-1]
        digest = hashlib.sha256(url.encode()).hexdigest()
        path = self.cache_dir / digest[:2] / f"{digest[:16]}-{name}"
        with self._lock_for(url):
            if path.is_file():
                self.traffic.add(cached_files=1, cached_bytes=path.stat().st_size)
            else:
                started = time.monotonic()
                upstream = self._fetch(url)
                if upstream is None:
                    return
                path.parent.mkdir(parents=True, exist_ok=True)
                # Written aside and renamed: an interrupted download never leaves a file under the name.
                with upstream, tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as out:
                    try:
                        shutil.copyfileobj(upstream, out, 1 << 20)
                    except BaseException:
                        Path(out.name).unlink()
                        raise
                Path(out.name).replace(path)
                self.traffic.add(fetched_files=1, fetched_bytes=path.stat().st_size, fetch_s=time.monotonic() - started)
        self._file(path, body)

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
        self.traffic.add(local_files=1, local_bytes=path.stat().st_size)
        self._file(path, body)

    def _file(self, path: Path, body: bool) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        if body:
            with path.open("rb") as f:
                shutil.copyfileobj(f, self.wfile, 1 << 20)

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
    ``http://INDEX_HOST/https/<host>/...`` through 127.0.0.1:<port>; ``cafile`` verifies the hosts;
    ``cache_dir`` keeps the hosts' distribution files (None: fetched every time)."""

    def __init__(
        self,
        roots: Iterable[Path],
        hosts: Iterable[str] = (),
        cafile: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.traffic = Traffic()
        attrs = {
            "roots": tuple(Path(r).resolve() for r in roots),
            "hosts": frozenset(hosts),
            "tls": ssl.create_default_context(cafile=cafile),
            "cache_dir": cache_dir,
            "traffic": self.traffic,
            "pages": {},
            "locks": {},
            "locks_lock": threading.Lock(),
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
