"""Outer ASGI middleware: request ids, rate-limit headers, body size limit, access log, metrics, usage counters.

A plain ASGI middleware (not ``BaseHTTPMiddleware``) so streaming bodies are counted as they
arrive and an unhandled exception still gets the error body and the request id.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from contextvars import ContextVar
from typing import Any, Final

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.services import Services

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
_VALID_ID: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
UNMATCHED: Final = "<unmatched>"
log = logging.getLogger("api.access")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def route_label(scope: Scope) -> str:
    """The route template (``/v1/explanations/{ticker}``), never the raw path: bounded cardinality.

    FastAPI's own pages (``/docs``, ``/openapi.json``) are plain Starlette routes, which set the
    matched ``endpoint`` but no ``route``: they take their path, one of a fixed few. Anything that
    matched nothing (a 404) is ``<unmatched>``.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope.get("endpoint") is not None and not scope.get("path_params"):
        return str(scope.get("path", UNMATCHED))
    return UNMATCHED


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def send_error(send: Send, status: int, code: str, message: str, request_id: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "request_id": request_id}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GatewayMiddleware:
    """Wraps every HTTP request; see the module docstring."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        self.max_body = services.settings.max_body_bytes
        # The labelled series of each (route, method, status) seen: ``labels()`` costs ~10 us a call.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        # 32 random hex digits, as uuid4().hex gave, without building a UUID (a tenth of the CPU).
        request_id = incoming if incoming and _VALID_ID.match(incoming) else os.urandom(16).hex()
        token = REQUEST_ID.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        state: dict[str, Any] = {"status": 500, "started": False}
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["started"] = message["status"], True
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                # Set by the quota dependency once the key is known: every answer after it, errors too.
                quota = scope["state"].get("quota")
                if quota is not None:
                    headers.update(quota.headers())
            await send(message)

        try:
            await self._dispatch(scope, receive, send_with_id, request_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if not state["started"]:
                await send_error(send_with_id, 500, "internal_error", "internal server error", request_id)
        finally:
            self._record(scope, state["status"], time.perf_counter() - start)
            REQUEST_ID.reset(token)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_error(send, 400, "bad_request", "invalid Content-Length", request_id)
                return
            if int(declared) > self.max_body:
                await send_error(send, 413, "payload_too_large", self._too_large(), request_id)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    # FastAPI re-raises HTTPException from body reading; the handler shapes the body.
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self) -> str:
        return f"request body larger than {self.max_body} bytes"

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route, method = route_label(scope), scope["method"]
        series = self._series.get((route, method, status))
        if series is None:
            metrics = self.services.metrics
            series = (
                metrics.requests.labels(route=route, method=method, status=str(status)),
                metrics.request_duration.labels(route=route, method=method),
            )
            self._series[(route, method, status)] = series
        series[0].inc()
        series[1].observe(elapsed)
        principal = scope.get("state", {}).get("principal")
        if principal is not None:
            self.services.usage.count(principal.tenant, route)
        log.info(
            "%s %s %s %.1fms tenant=%s",
            method,
            route,
            status,
            elapsed * 1000,
            getattr(principal, "tenant", "-"),
        )
