"""Start a KServe ``ModelServer`` for one registered model: load, check, bind, poll, shut down.

KServe's ``ModelServer.start`` hard-codes ``0.0.0.0`` for REST (and ``[::]`` for gRPC), so
:class:`LoopbackModelServer` builds the REST server itself with the configured host (127.0.0.1 by
default) and never starts gRPC: nothing is patched inside KServe. One worker only: several
uvicorn workers would each keep their own metrics and their own reload poll.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from kserve import ModelServer
from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
from kserve.model_server import app
from kserve.protocol.rest.server import RESTServer
from pydantic import ValidationError

from feature_repo.contract import (
    ALLOCATOR,
    ENSEMBLE,
    EXPLAIN_SUFFIX,
    SENTIMENT_TEXT,
    SIGNAL_FEATURE_SERVICES,
    signal_services,
)
from serving.allocator_model import AllocatorModel
from serving.champion import Champion
from serving.ensemble_model import EnsembleModel
from serving.errors import BadRequest, ServingError
from serving.grpc_loopback import LoopbackGRPCServer
from serving.loaders import (
    LoadedAllocator,
    LoadedEnsemble,
    LoadedSentimentText,
    LoadedSignal,
    load_allocator,
    load_ensemble,
    load_sentiment_text,
    load_signal,
)
from serving.model_base import ChampionModel
from serving.registry import Registry, VersionRef
from serving.sentiment_text_model import SentimentTextModel
from serving.settings import ServerOptions, get_settings
from serving.signal_model import SignalExplainModel, SignalModel

log = logging.getLogger(__name__)

# Seconds uvicorn lets in-flight requests finish after SIGTERM (the pod's grace period is 30 s).
GRACE_SECONDS = 10


class LoopbackModelServer(ModelServer):  # type: ignore[misc]  # kserve ships no type hints
    """A single-worker ``ModelServer`` bound to ``host``: REST, and v2 gRPC when given a port."""

    def __init__(self, host: str, http_port: int, grpc_port: int | None = None) -> None:
        super().__init__(
            http_port=http_port,
            workers=1,
            enable_grpc=False,
            # Per-request latency lines are noise next to the Prometheus histograms.
            enable_latency_logging=False,
            grace_period=GRACE_SECONDS,
        )
        self.host = host
        self.grpc_listen_port = grpc_port
        self._grpc: LoopbackGRPCServer | None = None
        # KServe logs two timing lines per request on "kserve.trace"; the access log and the
        # Prometheus histograms already carry that, at a fraction of the cost.
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)

    def start(self, models: list[Any]) -> None:
        """Register ``models`` (at least one ready) and serve until SIGTERM/SIGINT."""
        self._register_and_check_atleast_one_model_is_ready(models)
        rest = RESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
        )
        # The uvicorn server holds this same Config object and reads the host when it binds.
        rest.config.host = self.host
        # Starlette picks the handler of the most specific class in the exception's MRO, so this
        # one answers BadRequest ahead of KServe's InvalidInput handler.
        app.add_exception_handler(BadRequest, _bad_request)
        self._rest_server = rest
        self.servers.append(rest.start())
        if self.grpc_listen_port is not None:
            self._grpc = LoopbackGRPCServer(
                self.host, self.grpc_listen_port, self.dataplane, self.model_repository_extension, GRACE_SECONDS
            )
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        # uvicorn owns SIGTERM/SIGINT: when REST has drained and returned, gRPC drains and stops too.
        grpc_task = asyncio.create_task(self._grpc.start()) if self._grpc is not None else None
        try:
            await asyncio.gather(*self.servers)
        finally:
            if grpc_task is not None and self._grpc is not None:
                await self._grpc.stop()
                await asyncio.gather(grpc_task, return_exceptions=True)


async def _bad_request(request: Request, exc: Exception) -> JSONResponse:
    # KServe's body ({"error": reason}, plus the code of a refusal callers act on), but one
    # warning line instead of an ERROR with a traceback: a client's mistake is not a server fault,
    # and must not flood the logs.
    log.warning("400 %s %s: %s", request.method, request.url.path, exc)
    content = exc.body() if isinstance(exc, BadRequest) else {"error": str(exc)}
    return JSONResponse(status_code=HTTPStatus.BAD_REQUEST, content=content)


def fail(prog: str, error: Exception) -> SystemExit:
    """Print ``error`` as one line on stderr (no traceback: nothing is cached, the operator must act)."""
    print(f"{prog}: cannot start: {' '.join(str(error).split())}", file=sys.stderr, flush=True)
    return SystemExit(1)


def _serve(options: ServerOptions, champion: Champion[Any], models: Sequence[ChampionModel[Any]]) -> None:
    prog = f"serving.{options.registered_name}"
    try:
        champion.load_initial()
    except ServingError as e:
        raise fail(prog, e) from None
    for model in models:
        model.load()
    # The loaded model, MLflow, KServe and pandas leave hundreds of thousands of long-lived objects
    # that every full collection walked again (100-400 ms pauses, measured under load): keep them
    # out of later collections. A version loaded later by the poll is collected as usual.
    gc.collect()
    gc.freeze()
    server = LoopbackModelServer(options.host, options.http_port, options.grpc_port)
    champion.start_polling(options.reload_seconds)
    log.info("%s listening on http://%s:%d", prog, options.host, options.http_port)
    if options.grpc_port is not None:
        log.info("%s v2 gRPC on %s:%d", prog, options.host, options.grpc_port)
    try:
        server.start(list(models))
    except SystemExit as e:
        if e.code not in (0, None):  # uvicorn's own failures (a port in use) keep their status
            raise
    finally:
        champion.stop()
        for model in models:
            model.stop()


def _signal_models(options: ServerOptions, registry: Registry) -> list[ChampionModel[Any]]:
    service = options.feature_service or SIGNAL_FEATURE_SERVICES[options.registered_name]
    known = signal_services(options.registered_name)
    if service not in known:
        raise ServingError(
            f"feature service '{service}' is unknown to this server: '{options.registered_name}' "
            f"serves {', '.join(known)}"
        )

    def loader(ref: VersionRef) -> LoadedSignal:
        return load_signal(registry, ref, service)

    champion = Champion(options.model_name, options.registered_name, options.alias, registry, loader)
    return [
        SignalModel(options.model_name, champion),
        SignalExplainModel(options.model_name + EXPLAIN_SUFFIX, champion),
    ]


def _ensemble_models(options: ServerOptions, registry: Registry) -> list[ChampionModel[Any]]:
    def loader(ref: VersionRef) -> LoadedEnsemble:
        return load_ensemble(registry, ref)

    champion = Champion(options.model_name, options.registered_name, options.alias, registry, loader)
    return [EnsembleModel(options.model_name, champion)]


def _allocator_models(options: ServerOptions, registry: Registry) -> list[ChampionModel[Any]]:
    def loader(ref: VersionRef) -> LoadedAllocator:
        return load_allocator(registry, ref)

    champion = Champion(options.model_name, options.registered_name, options.alias, registry, loader)
    return [AllocatorModel(options.model_name, champion)]


def _sentiment_text_models(options: ServerOptions, registry: Registry, max_texts: int) -> list[ChampionModel[Any]]:
    def loader(ref: VersionRef) -> LoadedSentimentText:
        return load_sentiment_text(registry, ref)

    champion = Champion(options.model_name, options.registered_name, options.alias, registry, loader)
    return [SentimentTextModel(options.model_name, champion, max_texts)]


def serve(options: ServerOptions) -> None:
    """Load ``options.registered_name``'s version, serve it until SIGTERM/SIGINT, then return.

    Signal models are served as ``<model_name>`` and ``<model_name>-explain``; the ensemble, the
    allocator and the text model as ``<model_name>``.

    Raises:
        SystemExit: status 1 with a one-line message when the registry or the version is unusable.
    """
    prog = f"serving.{options.registered_name}"
    try:
        settings = get_settings()
        registry = Registry(settings.resolve_tracking_uri())
    except ValidationError as e:
        raise fail(prog, e) from None
    if options.registered_name == ENSEMBLE:
        models = _ensemble_models(options, registry)
    elif options.registered_name == ALLOCATOR:
        models = _allocator_models(options, registry)
    elif options.registered_name == SENTIMENT_TEXT:
        models = _sentiment_text_models(options, registry, settings.sentiment_max_texts)
    elif options.registered_name in SIGNAL_FEATURE_SERVICES:
        try:
            models = _signal_models(options, registry)
        except ServingError as e:
            raise fail(prog, e) from None
    else:
        raise fail(prog, ServingError(f"'{options.registered_name}' is not a model of the serving contract"))
    _serve(options, models[0].champion, models)
