"""The gateway tells a model server's refusals apart by the body's ``code``, never by its wording.

A real HTTP server on 127.0.0.1 stands in for the allocator and answers every inference with one
fixed 400 body; the gateway (real app, real Feast repo of the gateway tests) must name the
refusal by the code alone. A server answering in the old way only (the wording, no code) is read
as any other 400: the allocation falls back with the reason ``http_400``.
"""

# ruff: noqa: F811  # fixtures imported from tests/gateway_fixtures are parameters by design
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from feature_repo.contract import ALLOCATOR, ERROR_CODE_FIELD, ERROR_REASON_FIELD, ErrorCode
from tests.gateway_fixtures.fixtures import auth, make_gateway, new_key, shared_env  # noqa: F401

pytestmark = pytest.mark.slow


@contextmanager
def refusing_allocator(body: dict[str, str]) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering every POST with 400 and ``body``; yields its base URL."""
    payload = json.dumps(body).encode()

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({ERROR_REASON_FIELD: "any wording at all", ERROR_CODE_FIELD: ErrorCode.OUTSIDE_UNIVERSE}, "outside_universe"),
        ({ERROR_REASON_FIELD: "outside the allocator's trained universe of 4 tickers: XYZ"}, "http_400"),
    ],
    ids=["code", "wording-only"],
)
def test_a_refusal_is_named_by_its_code(make_gateway, shared_env, body: dict[str, str], reason: str) -> None:
    with refusing_allocator(body) as url:
        client = make_gateway(model_urls={**shared_env.model_urls(), ALLOCATOR: url})
        key = new_key(client)
        response = client.post(
            "/v1/allocations", json={"universe": shared_env.tickers[:2], "capital": 1_000}, headers=auth(key)
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["degraded"] is True and answer["method"] != ALLOCATOR
    first = answer["reasons"][0]
    assert first["model"] == ALLOCATOR and first["code"] == reason
    if reason == ErrorCode.OUTSIDE_UNIVERSE:
        assert "any wording at all" in first["message"]  # the server's reason is passed on
