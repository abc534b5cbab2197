"""The gateway's one exception root and its mapping to HTTP, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

# Error codes a client acts on (the typed client retries this one), defined once for both sides.
IDEMPOTENCY_IN_PROGRESS = "idempotency_in_progress"

if TYPE_CHECKING:
    from api.ratelimit import Quota


class GatewayError(Exception):
    """Root of every error the gateway answers on purpose.

    Attributes:
        status_code: the HTTP status it maps to.
        code: a stable machine-readable code for the error body.
    """

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidRequestError(GatewayError):
    """The request is well-formed JSON but asks for something the gateway refuses."""

    status_code = 422
    code = "validation_error"


class UnknownTickersError(GatewayError):
    """Tickers that have no row in the online store."""

    status_code = 404
    code = "unknown_tickers"

    def __init__(self, tickers: list[str]) -> None:
        super().__init__(f"unknown tickers (not in the online feature store): {', '.join(tickers)}")
        self.tickers = tickers


class AuthenticationError(GatewayError):
    """A missing, malformed, unknown or revoked API key."""

    status_code = 401
    code = "unauthenticated"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class PermissionDeniedError(GatewayError):
    """A valid key without the scope the endpoint needs."""

    status_code = 403
    code = "forbidden"


class RateLimitedError(GatewayError):
    """The key's moving-window quota is spent."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, retry_after_s: int, limit: str, quota: Quota | None = None) -> None:
        super().__init__(f"rate limit {limit} exceeded; retry after {retry_after_s} s")
        self.headers = {"Retry-After": str(retry_after_s)}
        self.quota = quota  # for the RateLimit-* headers


class FeatureStoreUnavailableError(GatewayError):
    """The online feature store cannot be read."""

    status_code = 503
    code = "feature_store_unavailable"


class NoModelAvailableError(GatewayError):
    """No model that could answer the request is reachable."""

    status_code = 503
    code = "model_unavailable"


class ModelNotDeployedError(GatewayError):
    """The model behind the endpoint is not configured in MODEL_URLS."""

    status_code = 503
    code = "model_not_deployed"


class AuditWriteError(GatewayError):
    """The audit record could not be written; the answer is withheld (fail closed)."""

    status_code = 503
    code = "audit_unavailable"


class ModelCallError(Exception):
    """A single model call failed; composition turns it into a degraded reason, never a 5xx.

    Attributes:
        model: the model name.
        reason: a short code: timeout, connection_error, http_<status>, bad_response, circuit_open,
            not_deployed (and, for the allocator, outside_universe).
        detail: what the server said (its error reason for an http_<status>), for logs and reasons.
        code: the :class:`feature_repo.contract.ErrorCode` value of the server's error body, if any.
    """

    def __init__(self, model: str, reason: str, detail: str = "", code: str = "") -> None:
        super().__init__(f"{model}: {reason}{f' ({detail})' if detail else ''}")
        self.model = model
        self.reason = reason
        self.detail = detail
        self.code = code

    @property
    def refused(self) -> bool:
        """The server answered 4xx: it is up and refused this request (not a sign of ill health)."""
        return self.reason.startswith("http_4")
