"""scripts/index_proxy.py's wheel cache: a remote index's files cross the network once for every build.

The remote index is a real HTTPS server on 127.0.0.1 (a certificate made here for ``localhost``, which
the proxy trusts as it would the machine's CA bundle) that records every path asked of it.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import ssl
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT: Final = Path(__file__).resolve().parents[1]
WHEEL: Final = "demo-1.0-py3-none-any.whl"
WHEEL_BYTES: Final = b"PK wheel bytes " * 1000


def _load_proxy() -> Any:
    spec = importlib.util.spec_from_file_location("index_proxy", ROOT / "scripts" / "index_proxy.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["index_proxy"] = module
    spec.loader.exec_module(module)
    return module


index_proxy = _load_proxy()


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (its own CA), as PEM files: (certificate, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class Upstream:
    host: str  # localhost:<port>
    cafile: str
    asked: list[str]


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    """A PEP 503 index over HTTPS whose page links its wheel by absolute URL, as PyPI's do."""
    served = tmp_path / "upstream"
    (served / "simple" / "demo").mkdir(parents=True)
    (served / "packages").mkdir()
    (served / "packages" / WHEEL).write_bytes(WHEEL_BYTES)
    cert, key = _certificate(tmp_path)
    asked: list[str] = []

    class Recording(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Recording, directory=str(served)))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    host = f"localhost:{server.server_address[1]}"
    (served / "simple" / "demo" / "index.html").write_text(f'<a href="https://{host}/packages/{WHEEL}">{WHEEL}</a>')
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Upstream(host, str(cert), asked)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _get(proxy: Any, url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
    with opener.open(url, timeout=30) as response:
        body: bytes = response.read()
        return body


def test_a_remote_file_is_downloaded_once_for_every_build(upstream: Upstream, tmp_path: Path) -> None:
    cache = tmp_path / "wheels"
    page_url = index_proxy.proxied(f"https://{upstream.host}/simple/demo/")
    wheel_url = index_proxy.proxied(f"https://{upstream.host}/packages/{WHEEL}")
    with index_proxy.IndexProxy([], {upstream.host}, upstream.cafile, cache) as first:
        page = _get(first, page_url)
        assert wheel_url.encode() in page, "the page's links come back through the proxy"
        assert _get(first, page_url) == page
        assert _get(first, wheel_url) == WHEEL_BYTES
        assert _get(first, wheel_url) == WHEEL_BYTES
    assert upstream.asked == ["/simple/demo/", f"/packages/{WHEEL}"], "the page and the file were fetched once"
    assert first.traffic.as_dict() | {"fetch_s": 0, "page_fetch_s": 0} == {
        **dict.fromkeys(("local_files", "local_bytes", "fetch_s", "page_fetch_s"), 0),
        **{"fetched_files": 1, "fetched_bytes": len(WHEEL_BYTES), "cached_files": 1},
        **{"cached_bytes": len(WHEEL_BYTES), "pages_fetched": 1, "pages_reused": 1},
    }

    # A later run (a new proxy) reads the file from the cache folder; pages are asked again (they change).
    with index_proxy.IndexProxy([], {upstream.host}, upstream.cafile, cache) as later:
        assert _get(later, wheel_url) == WHEEL_BYTES
        _get(later, page_url)
    assert upstream.asked[2:] == ["/simple/demo/"]
    assert [p.name for p in cache.rglob("*") if p.is_file()] == [p.name for p in cache.rglob(f"*-{WHEEL}")]


def test_without_a_cache_folder_every_build_downloads(upstream: Upstream) -> None:
    wheel_url = index_proxy.proxied(f"https://{upstream.host}/packages/{WHEEL}")
    with index_proxy.IndexProxy([], {upstream.host}, upstream.cafile) as proxy:
        assert _get(proxy, wheel_url) == WHEEL_BYTES
        assert _get(proxy, wheel_url) == WHEEL_BYTES
    assert upstream.asked == [f"/packages/{WHEEL}"] * 2


def test_a_missing_remote_file_is_not_cached(upstream: Upstream, tmp_path: Path) -> None:
    cache = tmp_path / "wheels"
    missing = index_proxy.proxied(f"https://{upstream.host}/packages/demo-2.0-py3-none-any.whl")
    with index_proxy.IndexProxy([], {upstream.host}, upstream.cafile, cache) as proxy:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
        with pytest.raises(urllib.error.HTTPError) as raised:
            opener.open(missing, timeout=30)
    assert raised.value.code == 404
    assert not [p for p in cache.rglob("*") if p.is_file()]
