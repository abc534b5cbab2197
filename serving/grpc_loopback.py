"""KServe's v2 gRPC inference service on a given host (127.0.0.1 by default), beside REST.

KServe's own ``GRPCServer`` binds ``[::]``, which this project never does, so this class builds
the same service (KServe's ``InferenceServicer`` over the server's data plane: every model answers
on both transports) on an ``aio`` server bound to ``host:port`` only. It has KServe's
``start``/``stop`` shape so :class:`serving.server.LoopbackModelServer` can run it next to uvicorn.
"""

from __future__ import annotations

import logging
from typing import Any

from grpc import StatusCode, aio
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.servicer import InferenceServicer

from feature_repo.contract import ERROR_CODE_FIELD
from serving.errors import BadRequest

log = logging.getLogger(__name__)

# Large enough for one batched call over a 2,400-ticker universe (about 600 KB of FP64 features).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class _Servicer(InferenceServicer):  # type: ignore[misc]  # kserve ships no type hints
    """KServe's servicer, with a client's mistake answered as REST answers it.

    A :class:`BadRequest` is ``INVALID_ARGUMENT`` with the reason as details and, for a refusal a
    caller acts on, its code in the trailing metadata (``code``, the REST body's field); one
    warning line, where KServe's interceptor logs an ERROR with a traceback. Other failures go
    through KServe's own mapping (``ExceptionToStatusInterceptor``).
    """

    async def ModelInfer(self, request: Any, context: aio.ServicerContext[Any, Any]) -> Any:  # noqa: N802
        try:
            return await super().ModelInfer(request, context)
        except BadRequest as e:
            log.warning("gRPC ModelInfer %s refused: %s", request.model_name, e)
            if e.code is not None:
                context.set_trailing_metadata(((ERROR_CODE_FIELD, e.code.value),))
            await context.abort(StatusCode.INVALID_ARGUMENT, str(e))


class LoopbackGRPCServer:
    """The Open Inference Protocol's gRPC service for a model server's data plane, on ``host``."""

    def __init__(self, host: str, port: int, data_plane: Any, model_repository: Any, grace_seconds: float) -> None:
        self.address = f"{host}:{port}"
        self._data_plane = data_plane
        self._model_repository = model_repository
        self._grace_seconds = grace_seconds
        self._server: aio.Server | None = None

    async def start(self) -> None:
        """Bind, serve, and return once :meth:`stop` has run."""
        server = aio.server(
            interceptors=(ExceptionToStatusInterceptor(),),
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        servicer = _Servicer(self._data_plane, self._model_repository)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        if server.add_insecure_port(self.address) == 0:
            raise OSError(f"gRPC cannot bind {self.address}")
        self._server = server
        await server.start()
        await server.wait_for_termination()

    async def stop(self, sig: int | None = None) -> None:
        """Let in-flight calls finish (up to the grace period), then stop."""
        if self._server is not None:
            await self._server.stop(grace=self._grace_seconds)
