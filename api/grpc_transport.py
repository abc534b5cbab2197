"""v2 ``ModelInfer`` over gRPC for :class:`api.inference.InferenceClient`: one channel per model server.

Imported only when a model server is configured for gRPC (``PORTFOLIO_OS_MODEL_TRANSPORT`` /
``MODEL_TRANSPORTS``), so a gateway without ``grpcio`` (the optional extra
``portfolio-os[gateway-grpc]``) runs on REST as before.

Failures become the :class:`api.errors.ModelCallError` reasons the REST path gives, so degraded
reasons, breakers and refusals do not depend on the transport: ``DEADLINE_EXCEEDED`` is
``timeout``; ``UNAVAILABLE`` and ``CANCELLED`` (no connection, or it dropped) are
``connection_error``; any other status is ``http_<status>`` with the HTTP status gRPC's canonical
mapping pairs it with (``INVALID_ARGUMENT`` -> 400, ``NOT_FOUND`` -> 404, ``INTERNAL`` -> 500 ...),
the status's details as the detail and the ``code`` trailing metadata (the model servers' refusal
code, serving/grpc_loopback.py) as the code. A 4xx is a refusal: the server is up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import grpc
from grpc import aio

from api.errors import ModelCallError
from api.grpc_v2 import MODEL_INFER_METHOD, ModelInferResponse, V2CodecError, outputs_from_response, request_from_json
from feature_repo.contract import ERROR_CODE_FIELD

# As large as the model servers accept: one batched call over a 2,400-ticker universe is ~600 KB.
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
MAX_ERROR_TEXT: Final = 500
CHANNEL_OPTIONS: Final = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Model servers are reached directly (loopback, cluster DNS): never through an HTTP proxy
    # picked up from the environment.
    ("grpc.enable_http_proxy", 0),
)
# The HTTP status each gRPC status corresponds to (google.rpc.Code's documented mapping).
HTTP_STATUS: Final = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}
TRANSPORT_FAILURES: Final = {
    grpc.StatusCode.DEADLINE_EXCEEDED: "timeout",
    grpc.StatusCode.UNAVAILABLE: "connection_error",
    grpc.StatusCode.CANCELLED: "connection_error",
}


def call_error(model: str, error: aio.AioRpcError) -> ModelCallError:
    """The :class:`ModelCallError` a failed call stands for (see the module docstring)."""
    status = error.code()
    transport = TRANSPORT_FAILURES.get(status)
    if transport is not None:
        return ModelCallError(model, transport, status.name)
    code = ""
    for key, value in error.trailing_metadata() or ():
        if key == ERROR_CODE_FIELD and isinstance(value, str):
            code = value
    detail = (error.details() or status.name)[:MAX_ERROR_TEXT]
    return ModelCallError(model, f"http_{HTTP_STATUS.get(status, 500)}", detail, code)


class GRPCTransport:
    """``ModelInfer`` calls to the model servers of ``addresses`` (server name -> ``host:port``).

    Channels are opened on first use, on the running event loop (gRPC's asyncio channels belong to
    the loop that made them), and kept: one HTTP/2 connection per server carries every call.

    A channel that could not reach its server waits out a growing back-off (up to minutes) before
    it tries again, failing every call meanwhile; a server back from a restart would then stay
    unreachable long after the circuit breaker lets a probe through. So a call that finds its
    server unreachable retires the channel (closed once its calls in flight end) and the next
    call connects afresh, as the next REST call does.
    """

    def __init__(self, addresses: Mapping[str, str]) -> None:
        self.addresses = dict(addresses)
        self._open: dict[str, tuple[aio.Channel, Any]] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    def _channel(self, server: str) -> tuple[aio.Channel, Any]:
        found = self._open.get(server)
        if found is None:
            channel = aio.insecure_channel(self.addresses[server], options=CHANNEL_OPTIONS)
            call = channel.unary_unary(
                MODEL_INFER_METHOD,
                request_serializer=_serialize,
                response_deserializer=ModelInferResponse.FromString,
            )
            found = self._open[server] = (channel, call)
        return found

    def _retire(self, server: str, channel: aio.Channel, grace_s: float) -> None:
        current = self._open.get(server)
        if current is None or current[0] is not channel:
            return  # already replaced by a concurrent call
        del self._open[server]
        task = asyncio.get_running_loop().create_task(channel.close(grace=grace_s))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def infer(self, model: str, server: str, body: bytes, timeout_s: float) -> tuple[str, dict[str, list[Any]]]:
        """``model``'s answer to the v2 JSON ``body``: its version and outputs by name.

        Raises:
            ModelCallError: any failure, with the reason the REST path would give.
        """
        try:
            request = request_from_json(model, body)
        except V2CodecError as e:
            raise ModelCallError(model, "bad_request", str(e)) from e
        channel, call = self._channel(server)
        try:
            response = await call(request, timeout=timeout_s)
        except aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                self._retire(server, channel, timeout_s)
            raise call_error(model, e) from e
        except aio.UsageError as e:  # the channel was closed under the call (the gateway shutting down)
            raise ModelCallError(model, "connection_error", str(e)) from e
        try:
            return str(response.model_version), outputs_from_response(response)
        except (V2CodecError, UnicodeDecodeError) as e:
            raise ModelCallError(model, "bad_response", f"not a v2 inference response: {e}") from e

    async def aclose(self) -> None:
        channels = [channel for channel, _ in self._open.values()]
        self._open.clear()
        for channel in channels:
            await channel.close()
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


def _serialize(message: Any) -> bytes:
    return bytes(message.SerializeToString())
