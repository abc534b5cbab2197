"""The scored universe: every model scores the whole online universe once per snapshot, in the background.

Scores depend only on the features and the model versions, and both change rarely (features at
materialisation, versions at a champion change). Every ``poll_seconds`` the gateway lists the online
universe with a marker of its rows (:mod:`api.universe`) and asks each model server which version it
serves; when either differs from the current snapshot's, it reads every row once, calls each
component model once with the whole universe (at most ``max_in_flight`` calls at a time), then the
ensemble, and swaps the new :class:`ScoredSnapshot` in. A request is then a lookup.

A poll that finds nothing changed confirms the snapshot; one that cannot build (a model server
down, the store unreadable) keeps the previous snapshot serving. A snapshot not confirmed for
``max_age_seconds`` is stale: requests go back to calling the models themselves, with their
timeouts, circuit breakers and degraded reasons, as they do for tickers the snapshot lacks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Final

from starlette.concurrency import run_in_threadpool

from api.compose import ComposedSignals, blended_scores, compose_into, reason
from api.errors import FeatureStoreUnavailableError, ModelCallError
from api.features import FeatureSnapshot, OnlineFeatures
from api.inference import InferenceClient, InferResult, encode_inputs, fp64_inputs
from api.metrics import GatewayMetrics
from api.registry import info_version
from api.scored_snapshot import Lookup, ScoredSnapshot
from api.settings import ScoredSettings
from feature_repo.contract import COMPONENT_MODELS, ENSEMBLE, SCORE_OUTPUT, SERVED_SERVICES, SIGNAL_FEATURE_SERVICES

log = logging.getLogger(__name__)
SCORED_MODELS: Final = (*COMPONENT_MODELS, ENSEMBLE)
Versions = dict[str, str | None]


class BuildFailedError(Exception):
    """A snapshot could not be built; the previous one keeps serving."""


class ScoredUniverse:
    """The current :class:`ScoredSnapshot` and the poll that keeps it current.

    Args:
        features: the online feature reader (its lock serialises store access).
        client: returns the shared model client (created on the running loop).
        settings: poll interval, staleness limit, build timeout and concurrency.
        metrics: the gateway's metrics (age, build time, coverage).
        clock: monotonic seconds; tests inject theirs.
    """

    def __init__(
        self,
        features: OnlineFeatures,
        client: Callable[[], InferenceClient],
        settings: ScoredSettings,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.features = features
        self.client = client
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.current: ScoredSnapshot | None = None
        self.confirmed_at: float | None = None
        self._poll_lock: asyncio.Lock | None = None
        # The lookup counter's four series, resolved once: ``labels()`` costs ~10 us on every request.
        self._lookups = {o: metrics.scored_lookups.labels(outcome=o) for o in ("none", "stale", "missing", "hit")}
        metrics.scored_age.set_function(lambda: math.nan if (age := self.age()) is None else age)

    def age(self) -> float | None:
        """Seconds since the snapshot was last confirmed current (``None``: no snapshot)."""
        return None if self.confirmed_at is None else self.clock() - self.confirmed_at

    def fresh(self) -> ScoredSnapshot | None:
        """The snapshot, unless there is none or it is older than ``max_age_seconds``."""
        age = self.age()
        if self.current is None or age is None or age > self.settings.max_age_seconds:
            return None
        return self.current

    def lookup(self, tickers: list[str]) -> Lookup | None:
        """The answer for ``tickers`` from a fresh snapshot holding them all, else ``None`` (counted)."""
        snapshot = self.fresh()
        if snapshot is None:
            self._lookups["none" if self.current is None else "stale"].inc()
            return None
        positions = snapshot.positions(tickers)
        if positions is None:
            self._lookups["missing"].inc()
            return None
        self._lookups["hit"].inc()
        return Lookup(snapshot, tuple(tickers), positions)

    def features_for(self, tickers: list[str], views: tuple[str, ...]) -> FeatureSnapshot | None:
        """The rows of ``tickers`` in ``views`` from a fresh snapshot, or ``None`` (not all there)."""
        snapshot = self.fresh()
        subset = snapshot.subset(tickers, views) if snapshot is not None else None
        if subset is None:
            return None
        # A ticker with rows in other views only: the store read names it as unknown.
        return subset if all(subset.tickers_as_of()) else None

    async def run_forever(self) -> None:
        """Poll at start, then every ``poll_seconds``; a failed poll is logged and retried."""
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug here must not end the poll: the snapshot then just ages out
                log.exception("scored universe poll failed")
            await asyncio.sleep(self.settings.poll_seconds)

    async def refresh(self) -> bool:
        """One poll: confirm the snapshot, or build a new one when the store or a version changed.

        Returns:
            Whether the current snapshot is current now (confirmed or newly built).
        """
        if self._poll_lock is None:
            self._poll_lock = asyncio.Lock()
        async with self._poll_lock:
            try:
                current = self.current
                scan = await run_in_threadpool(self.features.scan, current.marker if current else None)
            except FeatureStoreUnavailableError as e:
                log.warning("scored universe: %s; the snapshot is not confirmed", e)
                return False
            versions = await served_versions(self.client())
            if current is not None and current.marker == scan.marker and current.served_versions == versions:
                self.confirmed_at = self.clock()
                return True
            tickers = scan.tickers
            if tickers is None:  # the store is as scored; a version changed: list it anyway
                tickers = (await run_in_threadpool(self.features.scan)).tickers or []
            return await self._rebuild(scan.marker, tickers, versions)

    async def _rebuild(self, marker: str, tickers: list[str], versions: Versions) -> bool:
        started = self.clock()
        try:
            snapshot = await self._build(marker, tickers, versions, started)
        except (BuildFailedError, FeatureStoreUnavailableError) as e:
            self.metrics.scored_build_duration.labels(outcome="failed").observe(self.clock() - started)
            log.warning("scored universe not rebuilt (the previous snapshot keeps serving): %s", e)
            return False
        self.metrics.scored_build_duration.labels(outcome="ok").observe(snapshot.build_seconds)
        self.metrics.scored_tickers.set(len(snapshot.rows))
        self.current, self.confirmed_at = snapshot, snapshot.built_at
        log.info("scored universe: %d tickers in %.3f s", len(snapshot.rows), snapshot.build_seconds)
        return True

    async def _build(self, marker: str, tickers: list[str], versions: Versions, started: float) -> ScoredSnapshot:
        features = await run_in_threadpool(self.features.read_known, tickers, SERVED_SERVICES)
        client = self.client()
        gate = asyncio.Semaphore(self.settings.max_in_flight)
        timeout = self.settings.build_timeout_s

        async def call(model: str, body: Callable[[], bytes]) -> InferResult:
            async with gate:
                return await client.infer_once(model, body(), timeout_s=timeout)

        def inputs(model: str) -> Callable[[], bytes]:
            return lambda: encode_inputs(fp64_inputs(features.service_columns(SIGNAL_FEATURE_SERVICES[model])))

        results = await asyncio.gather(*(call(m, inputs(m)) for m in COMPONENT_MODELS), return_exceptions=True)
        n = len(features.tickers)
        out = ComposedSignals(signals=[], model_versions={})
        scores: dict[str, list[float | None]] = {}
        for model, result in zip(COMPONENT_MODELS, results, strict=True):
            try:
                if isinstance(result, BaseException):
                    raise result
                scores[model] = result.floats(SCORE_OUTPUT, n)
                out.model_versions[model] = result.version
            except ModelCallError as e:
                if e.reason != "not_deployed":
                    raise BuildFailedError(f"{model}: {e}") from e
                out.reasons.append(reason(e))
        if not scores:
            raise BuildFailedError("no component model is deployed")
        blend = await self._blend(call, scores)
        blended, coverage = blended_scores(blend, scores, n, out, self.metrics)
        compose_into(
            out, features.tickers, as_of=features.tickers_as_of(), scores=scores, blended=blended, coverage=coverage
        )
        return ScoredSnapshot.from_composition(
            out,
            features,
            scores,
            marker=marker,
            # A server that does not report its version is known by its answers' from now on.
            served_versions={m: v or out.model_versions.get(m) for m, v in versions.items()},
            built_at=self.clock(),
            build_seconds=self.clock() - started,
        )

    async def _blend(
        self, call: Callable[[str, Callable[[], bytes]], Awaitable[InferResult]], scores: dict[str, list[float | None]]
    ) -> InferResult | None:
        """The ensemble's batched answer; ``None`` when it is not deployed (the equal-weight blend, as per request)."""
        try:
            return await call(ENSEMBLE, lambda: encode_inputs(fp64_inputs(scores)))
        except ModelCallError as e:
            if e.reason != "not_deployed":
                raise BuildFailedError(f"{ENSEMBLE}: {e}") from e
            return None


async def served_versions(client: InferenceClient) -> Versions:
    """The version each deployed scored model's server reports serving now.

    Read from the server's ``portfolio_os_model_info`` (its ``/metrics``); a server that does not
    export it is represented by the version of its last answer. A change starts a rebuild.
    """
    servers = sorted({client.urls[m] for m in SCORED_MODELS if client.deployed(m)})
    pages = dict(zip(servers, await asyncio.gather(*(client.get_text(f"{s}/metrics") for s in servers)), strict=True))
    versions: Versions = {}
    for model in SCORED_MODELS:
        if not client.deployed(model):
            continue
        status, text = pages[client.urls[model]]
        reported = info_version(text, model) if status == 200 else None
        versions[model] = reported or client.last_versions.get(model)
    return versions
