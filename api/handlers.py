"""Every error becomes ``{"error": {"code", "message", "request_id"}}``: the one mapping to HTTP."""

from __future__ import annotations

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
ERROR_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    status: {"model": ErrorPublic, "description": code.replace("_", " ")}
    for status, code in HTTP_CODES.items()
    if status in (401, 403, 404, 413, 422, 429, 503)
}


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
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()))
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    message = "invalid request: " + "; ".join(problems) if problems else "invalid request"
    return error_body(422, "validation_error", message, _request_id(request))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_body(exc.status_code, code, message, _request_id(request), dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    """Map the gateway's errors, validation errors and Starlette's HTTP errors to the error body.

    Unhandled exceptions are answered by the outer middleware (it owns the request id and runs
    outside Starlette's error middleware, which would otherwise answer in plain text).
    """
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
