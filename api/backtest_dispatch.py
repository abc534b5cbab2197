"""The gateway's backtest loop: start queued jobs, notice jobs whose process ended without a result.

One :meth:`BacktestDispatcher.tick` (run in a thread every ``poll_seconds`` by the app, or called
by a test with its own clock):

1. **Running jobs** whose executor says their process has ended, yet whose row is still
   ``running``, are marked failed with the executor's reason. This is also the restart path: after
   a gateway restart a local job's process is looked up by pid (and kept if it still runs this
   job), a Ray job by its submission id; a job whose process is gone fails with that reason.
2. **Queued jobs**, oldest first, are claimed (``queued -> running``) and submitted while fewer
   than ``max_running`` run, so queued jobs survive a restart and still run. A submission the
   executor refuses (Ray unreachable) goes back to the queue with the reason as its message.
3. The jobs-by-state gauge is refreshed.

Before the first pass, and every :data:`CATALOGUE_EVERY` after, the executor is asked to publish
the data catalogue (the sessions and tickers a backtest may cover) from the training side: a
local process in the embedded default, a Ray job on the cluster. A refusal (Ray not up yet) is
asked again on the next pass; a catalogue job that fails (no ingest yet) is asked again later.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.backtest_executors import Executor, ExecutorError, LocalExecutor, OffExecutor, RayJobsExecutor, make_executor
from api.backtests import BacktestStore, Clock
from api.metrics import GatewayMetrics
from api.settings import GatewaySettings
from feature_repo.backtests import JOB_STATES, QUEUED, RUNNING

log = logging.getLogger(__name__)
# How often the data catalogue is refreshed (new sessions after a daily ingest show up within this).
CATALOGUE_EVERY: Final = timedelta(hours=6)


class BacktestDispatcher:
    """Moves jobs between the queue, the executor and their final state (module docstring)."""

    def __init__(self, store: BacktestStore, executor: Executor, metrics: GatewayMetrics, *, max_running: int) -> None:
        self.store, self.executor, self.metrics = store, executor, metrics
        self.max_running = max_running
        self._catalogue_at: datetime | None = None

    def _reap(self) -> int:
        """Fail running jobs whose process ended without a result; returns how many still run."""
        running = 0
        for row in self.store.rows_in(RUNNING):
            if row.executor_ref is None:  # claimed, being submitted (or the submitter died): leave it
                running += 1
                continue
            try:
                liveness = self.executor.alive(row.executor_ref)
            except ExecutorError as e:
                log.warning("backtest job %s: status unknown (%s)", row.id, e)
                running += 1
                continue
            if liveness.alive:
                running += 1
            elif self.store.fail(row.id, f"the job stopped without a result: {liveness.detail}"):
                log.warning("backtest job %s failed: %s", row.id, liveness.detail)
        return running

    def _start(self, running: int) -> None:
        for row in self.store.rows_in(QUEUED):
            if running >= self.max_running:
                return
            if not self.store.claim(row.id):
                continue
            try:
                ref = self.executor.submit(row.id)
            except ExecutorError as e:
                self.store.requeue(row.id, str(e))
                log.warning("backtest job %s not started: %s", row.id, e)
                return
            self.store.started(row.id, ref)
            running += 1

    def tick(self) -> None:
        """One pass (module docstring); with execution off, queued jobs are left as they are."""
        self._refresh_catalogue()
        if isinstance(self.executor, LocalExecutor) and self.executor.catalogue is not None:
            self.executor.catalogue.poll()  # reaps it once it has exited
        running = self._reap()
        if not isinstance(self.executor, OffExecutor):
            self._start(running)
        counts = self.store.counts()
        for state in JOB_STATES:
            self.metrics.backtest_jobs.labels(state=state).set(counts.get(state, 0))

    def _refresh_catalogue(self) -> None:
        """Ask the executor to publish the data catalogue at start and every ``CATALOGUE_EVERY`` (module docstring)."""
        if not isinstance(self.executor, LocalExecutor | RayJobsExecutor):
            return
        now = self.store.clock()
        if self._catalogue_at is not None and now - self._catalogue_at < CATALOGUE_EVERY:
            return
        try:
            self.executor.publish_catalogue()
        except ExecutorError as e:
            log.warning("backtest data catalogue not refreshed (asked again next pass): %s", e)
            return
        self._catalogue_at = now

    def stop(self, ref: str | None) -> None:
        """Stop a cancelled job's process (best effort: the row is already cancelled)."""
        if ref is None:
            return
        try:
            self.executor.stop(ref)
        except ExecutorError as e:
            log.warning("could not stop backtest job %s: %s", ref, e)

    async def run_forever(self, poll_seconds: float) -> None:
        while True:
            try:
                await run_in_threadpool(self.tick)
            except Exception:  # a DB outage must not end the loop; the next poll tries again
                log.exception("backtest dispatcher pass failed")
            await asyncio.sleep(poll_seconds)


def build_backtests(
    settings: GatewaySettings, engine: Engine, metrics: GatewayMetrics, clock: Clock
) -> BacktestDispatcher:
    """The job store and its dispatcher from the settings (no connection opened here)."""
    config = settings.backtests
    store = BacktestStore(engine, clock, limit=config.max_jobs_per_tenant, retry_after_s=config.retry_after_s)
    executor = make_executor(
        config.executor,
        python=config.python,
        data_dir=settings.data_dir,
        database_url=settings.resolved_database_url,
        ray_address=config.ray_address,
        cpus=config.job_cpus,
        timeout_s=config.ray_timeout_s,
    )
    return BacktestDispatcher(store, executor, metrics, max_running=config.max_running)
