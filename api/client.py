"""A typed Python client for B2B consumers of the gateway.

Retries 429 and 503 (and connection errors) with exponential backoff and full jitter, honouring
``Retry-After`` when the gateway sends it; every call has a timeout. The default budget (6 retries,
0.5 s doubling to 10 s) carries a caller through a gateway restart of several seconds. Every POST
carries an ``Idempotency-Key`` made once per call and kept across its retries, so a retry of a
request whose first attempt did reach the gateway is answered from the stored answer instead of
running twice. Non-retryable errors raise
:class:`GatewayClientError` carrying the gateway's error body. The key's quota after the latest
answer (the ``RateLimit-*`` headers) is in :attr:`PortfolioOSClient.rate_limit`, to pace by.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Self, TypeVar

import httpx
from pydantic import BaseModel

from api.backtest_schemas import BacktestDataPublic, BacktestJobPublic, BacktestRequest
from api.briefing_schemas import BriefingPublic
from api.errors import IDEMPOTENCY_IN_PROGRESS
from api.market_schemas import ForecastPublic, ForecastRequest, RegimePublic
from api.schemas import (
    AllocationPublic,
    AllocationRequest,
    ExplanationPublic,
    ModelsPublic,
    SentimentPublic,
    SentimentRequest,
    SignalsPublic,
)

RETRYABLE: Final = frozenset({429, 502, 503, 504})
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class RateLimitState:
    """The key's quota after an answer: requests per window, left, and seconds until one more frees up."""

    limit: int
    remaining: int
    reset_s: int

    @classmethod
    def from_headers(cls, headers: httpx.Headers) -> RateLimitState | None:
        """From ``RateLimit-Limit``/``-Remaining``/``-Reset``; ``None`` when absent or not integers."""
        values = [headers.get(f"RateLimit-{name}", "") for name in ("Limit", "Remaining", "Reset")]
        if not all(v.isdigit() for v in values):
            return None
        limit, remaining, reset_s = (int(v) for v in values)
        return cls(limit=limit, remaining=remaining, reset_s=reset_s)


class GatewayClientError(Exception):
    """A non-2xx answer (after retries): status, error code, message and request id."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        super().__init__(f"{status} {code}: {message} (request {request_id})")
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id


class PortfolioOSClient:
    """Synchronous client. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_s: float = 5.0,
        max_retries: int = 6,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout_s,
            transport=transport,
        )
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self.rate_limit: RateLimitState | None = None  # after the latest answer that carried it

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def signals(self, tickers: list[str]) -> SignalsPublic:
        return self._call(SignalsPublic, "GET", "/v1/signals", params={"tickers": ",".join(tickers)})

    def allocations(self, request: AllocationRequest, *, idempotency_key: str | None = None) -> AllocationPublic:
        body = request.model_dump(mode="json")
        return self._post(AllocationPublic, "/v1/allocations", body, idempotency_key)

    def explanation(self, ticker: str, top: int = 5) -> ExplanationPublic:
        return self._call(ExplanationPublic, "GET", f"/v1/explanations/{ticker}", params={"top": top})

    def sentiment(self, texts: list[str], *, idempotency_key: str | None = None) -> SentimentPublic:
        body = SentimentRequest(texts=texts).model_dump(mode="json")
        return self._post(SentimentPublic, "/v1/sentiment", body, idempotency_key)

    def models(self) -> ModelsPublic:
        return self._call(ModelsPublic, "GET", "/v1/models")

    def regime(self, start: dt.date | None = None, end: dt.date | None = None) -> RegimePublic:
        """The market regime now and its history from ``start`` to ``end`` (the gateway's defaults when None)."""
        params = {name: day.isoformat() for name, day in (("from", start), ("to", end)) if day is not None}
        return self._call(RegimePublic, "GET", "/v1/regime", params=params)

    def briefing(self, day: dt.date | None = None) -> BriefingPublic:
        """The briefing of ``day`` (the last session on or before it; the last session when None)."""
        params = {"date": day.isoformat()} if day is not None else {}
        return self._call(BriefingPublic, "GET", "/v1/briefing", params=params)

    def forecast(self, request: ForecastRequest) -> ForecastPublic:
        """Percentile bands of the portfolio at each horizon. A pure function of the request and the data: a
        retry needs no idempotency key."""
        body = request.model_dump(mode="json", exclude_none=True)
        return self._call(ForecastPublic, "POST", "/v1/portfolios/forecast", json=body)

    def submit_backtest(self, request: BacktestRequest, *, idempotency_key: str | None = None) -> BacktestJobPublic:
        """Queue a backtest job (202); a retry with the call's idempotency key never queues it twice."""
        body = request.model_dump(mode="json", exclude_none=True)
        return self._post(BacktestJobPublic, "/v1/backtests", body, idempotency_key)

    def backtest(self, job_id: str) -> BacktestJobPublic:
        """A backtest job's state, progress and, once succeeded, its results."""
        return self._call(BacktestJobPublic, "GET", f"/v1/backtests/{job_id}")

    def cancel_backtest(self, job_id: str) -> BacktestJobPublic:
        """Cancel a queued or running job (a GatewayClientError 409 once it ended)."""
        return self._call(BacktestJobPublic, "DELETE", f"/v1/backtests/{job_id}")

    def backtest_data(self) -> BacktestDataPublic:
        """The sessions and tickers a backtest may cover."""
        return self._call(BacktestDataPublic, "GET", "/v1/backtest-data")

    def backtest_report(self, job_id: str) -> str:
        """The job's HTML tear sheet (a GatewayClientError 409 until it succeeded)."""
        return self._send("GET", f"/v1/backtests/{job_id}/report").text

    def _post(self, model: type[Model], path: str, body: dict[str, Any], key: str | None) -> Model:
        """A POST whose retries are safe: one idempotency key for the call (the caller's, or a new one)."""
        headers = {"Idempotency-Key": key or uuid.uuid4().hex}
        return self._call(model, "POST", path, json=body, headers=headers)

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        if retry_after and retry_after.isdigit():
            return min(float(retry_after), self.max_backoff_s)
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2**attempt))  # jitter

    def _call(self, model: type[Model], method: str, path: str, **kwargs: Any) -> Model:
        return model.model_validate(self._send(method, path, **kwargs).json())

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, retried (module docstring); the first answer below 400, else :class:`GatewayClientError`."""
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError):
                if attempt >= self.max_retries:
                    raise
            else:
                self.rate_limit = RateLimitState.from_headers(response.headers) or self.rate_limit
                if response.status_code < 400:
                    return response
                if not _retryable(response) or attempt >= self.max_retries:
                    raise _error(response)
            self._sleep(self._delay(attempt, response))
            attempt += 1


def _retryable(response: httpx.Response) -> bool:
    """429/5xx of a busy or restarting gateway, and a duplicate of a call still in progress."""
    if response.status_code in RETRYABLE:
        return True
    return response.status_code == 409 and _error(response).code == IDEMPOTENCY_IN_PROGRESS


def _error(response: httpx.Response) -> GatewayClientError:
    try:
        error = response.json()["error"]
        return GatewayClientError(response.status_code, error["code"], error["message"], error.get("request_id"))
    except (ValueError, KeyError, TypeError):
        return GatewayClientError(response.status_code, "http_error", response.text[:200], None)
