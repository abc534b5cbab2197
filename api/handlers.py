"""Every error becomes ``{"error": {"code", "message", "request_id"}}``: the one mapping to HTTP."""

from __future__ import annotations

import re
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.errors import GatewayError
from api.schemas import ErrorPublic

HTTP_CODES: Final[dict[int, str]] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
# What each documented status means on this API; every one carries the error envelope.
DESCRIPTIONS: Final[dict[int, str]] = {
    400: "Bad request: a body that is not valid JSON (or not UTF-8), or an invalid Content-Length",
    401: "Unauthenticated: a missing, malformed, unknown or revoked API key",
    403: "Forbidden: the key lacks the endpoint's scope",
    404: "Not found: unknown tickers (not in the online feature store)",
    413: "Payload too large: the body is over the gateway's limit",
    422: "Validation error: the request does not match the schema",
    429: "Rate limited: the key's quota is spent; retry after Retry-After seconds",
    500: "Internal error: a bug; the request id finds it in the logs",
    503: "Unavailable: the feature store, the database or the model behind the endpoint is down",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for ``statuses``, each with the error envelope."""
    return {status: {"model": ErrorPublic, "description": DESCRIPTIONS[status]} for status in statuses}


# Any route: the outer middleware answers 400 (Content-Length), 413 and 500 before or after it runs.
COMMON_RESPONSES: Final = error_responses(400, 413, 500)
# A route behind an API key, its quota and its request validation.
ERROR_RESPONSES: Final = {**COMMON_RESPONSES, **error_responses(401, 403, 422, 429, 503)}
# ... that names tickers (404 for those the online store does not know).
TICKER_ERROR_RESPONSES: Final = {**ERROR_RESPONSES, **error_responses(404)}


def error_body(
    status: int, code: str, message: str, request_id: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    payload = {"error": {"code": code, "message": message, "request_id": request_id}}
    return JSONResponse(payload, status_code=status, headers=headers)


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return error_body(exc.status_code, exc.code, exc.message, _request_id(request), exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        # Not JSON at all is a malformed request (400), as an undecodable body already is (FastAPI's
        # own 400); 422 is for JSON that does not match the schema.
        why = next((err.get("ctx") or {}).get("error", "") for err in errors if err.get("type") == "json_invalid")
        message = f"the body is not valid JSON: {why}" if why else "the body is not valid JSON"
        return error_body(400, HTTP_CODES[400], message, _request_id(request))
    problems = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    message = "invalid request: " + "; ".join(problems) if problems else "invalid request"
    return error_body(422, "validation_error", message, _request_id(request))


def _allowed_methods(request: Request) -> str:
    """The methods the OpenAPI document lists for this path (Starlette names only the first route matched).

    Literal paths win over templated ones (``/a/b`` before ``/a/{id}``).
    """
    paths: dict[str, dict[str, object]] = request.app.openapi()["paths"]
    for template in sorted(paths, key=lambda t: t.count("{")):
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), request.url.path):
            return ", ".join(sorted(method.upper() for method in paths[template]))
    return ""


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # A path served by one route per method (GET and DELETE /v1/backtests/{job_id}) allows them all.
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return error_body(exc.status_code, code, message, _request_id(request), headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map the gateway's errors, validation errors and Starlette's HTTP errors to the error body.

    Unhandled exceptions are answered by the outer middleware (it owns the request id and runs
    outside Starlette's error middleware, which would otherwise answer in plain text).
    """
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
