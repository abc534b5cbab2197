"""The ``Idempotency-Key`` header on POST routes: a dependency that claims or replays, a middleware that stores.

A route opts in with one parameter (``_key: AllocationsIdempotency``). The dependency runs after
authentication and the quota check (a replay needs the same credentials and counts against the
quota like any request): it claims the key, or raises :class:`IdempotentReplay`, whose handler
answers the stored status and body with ``Idempotent-Replayed: true``. The middleware sees the
claimed request's answer and stores it before its last byte is sent, so a client that retries
after receiving it always finds it. Only a 2xx answer is stored; any other status releases the
key, so a request refused (422, 429) or failed (5xx) may be sent again with the same key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any, Final

import orjson
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.audit import canonical_hash
from api.deps import AllocationsWriter, BacktestsWriter, SentimentReader, ServicesDep
from api.idempotency import IdempotencyStore, IdempotencyUnavailableError, StoredAnswer, request_fingerprint
from api.schemas import ErrorPublic
from api.services import Services
from api.tenants import Principal

log = logging.getLogger(__name__)
HEADER: Final = "Idempotency-Key"
REPLAYED: Final = "Idempotent-Replayed"
KEY_PATTERN: Final = r"^[!-~]{1,255}$"  # visible ASCII: a UUID, a ULID, an order id...
STATE_KEY: Final = "idempotency_claim"
IDEMPOTENCY_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "headers": {
            REPLAYED: {
                "description": "`true` when this is the stored answer of an earlier request with the same "
                "Idempotency-Key (absent otherwise)",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
    },
    409: {
        "model": ErrorPublic,
        "description": "Idempotency-Key conflict: `idempotency_key_reused` (the key was used with another "
        "request) or `idempotency_in_progress` (its first request is still running; retry after Retry-After)",
    },
}
KeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=255,
        pattern=KEY_PATTERN,
        description="Makes the POST safe to retry: the first 2xx answer is stored per tenant for 24 h "
        "(IDEMPOTENCY__TTL_HOURS) and replayed, with `Idempotent-Replayed: true`, to the same key with the "
        "same request; the same key with another request gets 409.",
    ),
]


class IdempotentReplay(Exception):  # control flow, not an error: the stored answer is sent
    """Raised by the dependency to answer with a stored response."""

    def __init__(self, answer: StoredAnswer) -> None:
        super().__init__("idempotent replay")
        self.answer = answer


@dataclass(frozen=True)
class Claim:
    """A key this request claimed: the middleware stores or releases it."""

    store: IdempotencyStore
    tenant: str
    key: str


def _fingerprint(request: Request, body: bytes) -> str:
    """Method, route and body; a JSON body by its canonical form, so key order and spacing do not matter."""
    try:
        canonical = canonical_hash(orjson.loads(body)).encode() if body else b""
    except orjson.JSONDecodeError:
        canonical = body
    return request_fingerprint(request.method, request.url.path, canonical)


async def _claim_or_replay(request: Request, services: Services, principal: Principal, key: str | None) -> None:
    if key is None:
        return
    store = services.idempotency
    fingerprint = _fingerprint(request, await request.body())  # Starlette caches the body for the route
    try:
        stored = await run_in_threadpool(store.begin, principal.tenant, key, fingerprint)
    except SQLAlchemyError as e:
        raise IdempotencyUnavailableError("the idempotency store is unavailable; retry later") from e
    if stored is not None:
        raise IdempotentReplay(stored)
    request.state.idempotency_claim = Claim(store, principal.tenant, key)


async def _allocations(
    request: Request, services: ServicesDep, principal: AllocationsWriter, key: KeyHeader = None
) -> None:
    await _claim_or_replay(request, services, principal, key)


async def _sentiment(
    request: Request, services: ServicesDep, principal: SentimentReader, key: KeyHeader = None
) -> None:
    await _claim_or_replay(request, services, principal, key)


async def _backtests(
    request: Request, services: ServicesDep, principal: BacktestsWriter, key: KeyHeader = None
) -> None:
    await _claim_or_replay(request, services, principal, key)


# The principal aliases are the routes' own, so FastAPI resolves auth and the quota once per request.
AllocationsIdempotency = Annotated[None, Depends(_allocations)]
SentimentIdempotency = Annotated[None, Depends(_sentiment)]
BacktestsIdempotency = Annotated[None, Depends(_backtests)]


async def _replay(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IdempotentReplay)
    answer = exc.answer
    return Response(answer.body, answer.status, headers={REPLAYED: "true"}, media_type=answer.content_type)


class IdempotencyMiddleware:
    """Stores the answer of a request that claimed a key (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _has_key(scope):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {"status": 0, "content_type": "application/json", "body": bytearray(), "done": False}

        async def store_then_send(message: Message) -> None:
            claim: Claim | None = scope.get("state", {}).get(STATE_KEY)
            if claim is None:
                await send(message)
                return
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        state["content_type"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                state["body"] += message.get("body", b"")
                if not message.get("more_body", False):
                    await _settle(claim, state)
            await send(message)

        try:
            await self.app(scope, receive, store_then_send)
        finally:
            claim = scope.get("state", {}).get(STATE_KEY)
            if claim is not None and not state["done"]:  # no complete answer went out (an exception)
                await run_in_threadpool(claim.store.release, claim.tenant, claim.key)


async def _settle(claim: Claim, state: dict[str, Any]) -> None:
    status = int(state["status"])
    state["done"] = True
    try:
        if 200 <= status < 300:
            answer = StoredAnswer(status, str(state["content_type"]), bytes(state["body"]))
            await run_in_threadpool(claim.store.complete, claim.tenant, claim.key, answer)
        else:
            await run_in_threadpool(claim.store.release, claim.tenant, claim.key)
    except SQLAlchemyError:
        # The answer still goes out; the claim stays pending until its lease ends, then a retry runs anew.
        log.exception("could not store the answer of Idempotency-Key %r (tenant %s)", claim.key, claim.tenant)


def _has_key(scope: Scope) -> bool:
    return any(name.lower() == b"idempotency-key" for name, _ in scope.get("headers", []))


def install_idempotency(app: FastAPI) -> None:
    """The replay handler and the storing middleware (add before the outer gateway middleware)."""
    app.add_exception_handler(IdempotentReplay, _replay)
    app.add_middleware(IdempotencyMiddleware)
