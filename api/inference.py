"""Async Open Inference Protocol v2 client: one shared httpx client, a timeout per call, a breaker per model.

Inference calls go over REST (v2 JSON) or, for the model servers named in ``grpc_addresses``, over
v2 gRPC (:mod:`api.grpc_transport`, imported only then). Both take the same v2 JSON body, so
callers, the answer cache, breakers, metrics and degraded reasons do not depend on the transport.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import httpx
import orjson

from api.cache import Cache
from api.circuit import CircuitBreaker
from api.errors import ModelCallError
from api.metrics import GatewayMetrics
from feature_repo.contract import ERROR_CODE_FIELD, ERROR_REASON_FIELD

if TYPE_CHECKING:
    from api.grpc_transport import GRPCTransport

MAX_CACHED_ANSWERS: Final = 4096
# A cached answer used after this share of its life is renewed by a background call, so under
# steady traffic no request waits for the model server when the answer expires (the wait would
# land in every concurrent request at once: the latency tail).
RENEW_AFTER_SHARE: Final = 0.5
JSON_HEADERS: Final = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class InferResult:
    """The outputs of one v2 call, by name, and the version that produced them."""

    model: str
    version: str
    outputs: dict[str, list[Any]]

    def floats(self, name: str, n: int) -> list[float | None]:
        """Output ``name`` as ``n`` floats (non-finite values become ``None``).

        Raises:
            ModelCallError: the output is missing or has the wrong length.
        """
        data = self.outputs.get(name)
        if data is None or len(data) != n:
            raise ModelCallError(self.model, "bad_response", f"output {name!r} missing or not of length {n}")
        return [_finite(v) for v in data]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def fp64_inputs(columns: Mapping[str, Sequence[float | None]]) -> list[dict[str, Any]]:
    """v2 inputs, one FP64 ``[n]`` tensor per column; missing values stay JSON ``null``."""
    return [{"name": k, "datatype": "FP64", "shape": [len(v)], "data": list(v)} for k, v in columns.items()]


def encode_inputs(inputs: list[dict[str, Any]]) -> bytes:
    """The body of a v2 inference request carrying ``inputs``."""
    return orjson.dumps({"inputs": inputs})


CacheKey = tuple[str, str, bytes]
MAX_ERROR_TEXT: Final = 500


def _error(model: str, response: httpx.Response) -> ModelCallError:
    """A model server's error answer: KServe's ``{"error": reason}`` body (else the raw text, bounded)
    and the ``code`` the server adds to a refusal the gateway acts on."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    fields = body if isinstance(body, dict) else {}
    text, code = fields.get(ERROR_REASON_FIELD), fields.get(ERROR_CODE_FIELD)
    detail = (text if isinstance(text, str) else response.text)[:MAX_ERROR_TEXT]
    return ModelCallError(model, f"http_{response.status_code}", detail, code if isinstance(code, str) else "")


class InferenceClient:
    """Calls the model servers of ``MODEL_URLS``: HTTP with a timeout per call, a circuit breaker per server.

    Inference calls to the servers of ``grpc_addresses`` (server name -> ``host:port``) go over v2
    gRPC instead, with the same timeout, breaker, metrics and failure reasons
    (:mod:`api.grpc_transport`).

    Every failure (not deployed, circuit open, timeout, connection error, non-200, malformed
    answer) raises :class:`ModelCallError`; callers decide how to degrade.

    Served models are deterministic, so :meth:`infer` answers are kept in :attr:`answers` (a
    :class:`api.cache.Cache`, ``cache_seconds``) per byte-identical input and model: concurrent
    identical calls share one request, failures are never kept, and an answer used after half its
    life is renewed in the background. A kept :class:`InferResult` carries the version that produced
    it, so an answer names the version that actually scored it; a new champion reaches answers
    within ``cache_seconds`` of its server loading it.
    """

    def __init__(
        self,
        urls: Mapping[str, str],
        timeout_s: float,
        breakers: Mapping[str, CircuitBreaker],
        metrics: GatewayMetrics,
        *,
        cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        grpc_addresses: Mapping[str, str] | None = None,
    ) -> None:
        self.urls = dict(urls)
        self.timeout_s = timeout_s
        self.breakers = dict(breakers)
        self.metrics = metrics
        self.last_versions: dict[str, str] = {}
        self.answers: Cache[CacheKey, InferResult] = Cache(
            "model_answers",
            metrics,
            ttl=cache_seconds,
            max_entries=MAX_CACHED_ANSWERS,
            refresh_share=RENEW_AFTER_SHARE,
            clock=clock,
        )
        # Connections are reused across requests; limits keep a burst from exhausting sockets.
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        # Model servers whose inference calls go over v2 gRPC (metadata, readiness and /metrics stay REST).
        self.grpc: GRPCTransport | None = None
        if grpc_addresses:
            from api.grpc_transport import GRPCTransport

            self.grpc = GRPCTransport(grpc_addresses)

    def transport(self, server: str) -> str:
        """``"grpc"`` or ``"rest"``: how inference calls reach ``server``."""
        return "grpc" if self.grpc is not None and server in self.grpc.addresses else "rest"

    def deployed(self, server: str) -> bool:
        return server in self.urls

    async def aclose(self) -> None:
        await self.answers.aclose()
        await self._http.aclose()
        if self.grpc is not None:
            await self.grpc.aclose()

    async def infer(
        self, model: str, inputs: list[dict[str, Any]], *, server: str | None = None, timeout_s: float | None = None
    ) -> InferResult:
        """POST ``/v2/models/<model>/infer`` (or gRPC ``ModelInfer``) on the server of ``server`` (default: ``model``).

        Raises:
            ModelCallError: any failure, with a short reason code.
        """
        return await self.infer_encoded(model, encode_inputs(inputs), server=server, timeout_s=timeout_s)

    async def infer_encoded(
        self, model: str, body: bytes, *, server: str | None = None, timeout_s: float | None = None
    ) -> InferResult:
        """:meth:`infer` with the request body already encoded (:func:`encode_inputs`), through :attr:`answers`.

        Raises:
            ModelCallError: any failure, with a short reason code.
        """
        server = server or model
        if server not in self.urls:
            raise ModelCallError(model, "not_deployed")
        return await self.answers.aget((server, model, body), partial(self._call, model, server, body, timeout_s))

    async def infer_once(self, model: str, body: bytes, *, timeout_s: float | None = None) -> InferResult:
        """:meth:`infer_encoded` past the answer cache (a batch of the whole universe is asked once).

        Raises:
            ModelCallError: any failure, with a short reason code.
        """
        if model not in self.urls:
            raise ModelCallError(model, "not_deployed")
        return await self._call(model, model, body, timeout_s)

    async def _call(self, model: str, server: str, body: bytes, timeout_s: float | None) -> InferResult:
        breaker = self.breakers[server]
        if not breaker.allow():
            self.metrics.model_call_duration.labels(model=model, version="", outcome="circuit_open").observe(0.0)
            raise ModelCallError(model, "circuit_open")
        start = time.perf_counter()
        version, outcome = self.last_versions.get(model, ""), "error"
        try:
            result = await self._send(model, server, body, timeout_s)
        except ModelCallError as e:
            if e.refused:
                # The server answered: it is up, this request was wrong (an allocation universe with
                # a ticker the model was not trained on). One tenant's bad requests must not open
                # the circuit for everyone.
                breaker.record_success()
            else:
                breaker.record_failure()
            outcome = e.reason
            raise
        else:
            breaker.record_success()
            outcome, version = "ok", result.version
            self.last_versions[model] = version
            return result
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.model_call_duration.labels(model=model, version=version, outcome=outcome).observe(elapsed)

    async def _send(self, model: str, server: str, body: bytes, timeout_s: float | None) -> InferResult:
        if self.grpc is not None and server in self.grpc.addresses:
            version, outputs = await self.grpc.infer(model, server, body, timeout_s or self.timeout_s)
            return InferResult(model=model, version=version, outputs=outputs)
        return await self._post(model, f"{self.urls[server]}/v2/models/{model}/infer", body, timeout_s)

    async def _post(self, model: str, url: str, body: bytes, timeout_s: float | None) -> InferResult:
        try:
            response = await self._http.post(
                url, content=body, headers=JSON_HEADERS, timeout=timeout_s or self.timeout_s
            )
        except httpx.TimeoutException as e:
            raise ModelCallError(model, "timeout") from e
        except httpx.HTTPError as e:
            raise ModelCallError(model, "connection_error", type(e).__name__) from e
        if response.status_code != 200:
            raise _error(model, response)
        try:
            answer = orjson.loads(response.content)
            outputs = {str(o["name"]): list(o["data"]) for o in answer["outputs"]}
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise ModelCallError(model, "bad_response", "not a v2 inference response") from e
        return InferResult(model=model, version=str(answer.get("model_version") or ""), outputs=outputs)

    async def get_text(self, url: str) -> tuple[int, str]:
        """GET a text document (a model server's ``/metrics``); ``(0, "")`` when unreachable."""
        try:
            response = await self._http.get(url)
        except httpx.HTTPError:
            return 0, ""
        return response.status_code, response.text

    async def get_json(self, url: str) -> tuple[int, Any]:
        """GET a JSON document (metadata, readiness, MLflow); ``(0, None)`` when unreachable."""
        try:
            response = await self._http.get(url)
        except httpx.HTTPError:
            return 0, None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None
