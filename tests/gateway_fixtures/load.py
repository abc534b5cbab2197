"""Concurrent ``/v1/signals`` load for the fault tests: every answer recorded with when it was sent and done.

Tests wait on what the load has seen (:meth:`Load.wait`), never on a sleep, and classify answers by
when their request was sent and when the answer came back, so a slow machine moves answers between
windows but never makes a right answer look wrong.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import httpx

CLIENTS: Final = 8
# Only stops a hung test; nothing asserts on it.
WAIT_DEADLINE_S: Final = 90.0


@dataclass(frozen=True)
class Answer:
    """One answer: monotonic send and receive times, status (0 for a transport error), what it carried."""

    sent: float
    done: float
    status: int
    degraded: bool | None
    technical_present: bool


@dataclass
class Load:
    """``clients`` concurrent clients on /v1/signals (one shared async client) until stopped."""

    url: str
    key: str
    tickers: str
    clients: int = CLIENTS
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def _record(self, answer: Answer) -> None:
        with self.changed:
            self.answers.append(answer)
            self.changed.notify_all()

    async def _client(self, client: httpx.AsyncClient) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                response = await client.get("/v1/signals", params={"tickers": self.tickers})
            except httpx.TransportError as e:
                self.errors.append(repr(e))
                self._record(Answer(sent, time.monotonic(), 0, None, False))
                continue
            body = response.json() if response.status_code == 200 else {}
            present = bool(body) and body["signals"][0]["components"]["technical"] is not None
            self._record(Answer(sent, time.monotonic(), response.status_code, body.get("degraded"), present))

    def run(self) -> None:
        async def main() -> None:
            headers = {"Authorization": f"Bearer {self.key}"}
            async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30.0) as client:
                await asyncio.gather(*(self._client(client) for _ in range(self.clients)))

        asyncio.run(main())

    def wait(self, condition: Callable[[list[Answer]], bool], what: str) -> None:
        """Block until ``condition(answers)`` holds (checked on every new answer)."""
        deadline = time.monotonic() + WAIT_DEADLINE_S
        with self.changed:
            while not condition(self.answers):
                if not self.changed.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise AssertionError(f"timed out waiting for {what}; {len(self.answers)} answers so far")

    @contextmanager
    def running(self) -> Iterator[Load]:
        with in_background(self.run, self.stop, join_s=60):
            yield self


@contextmanager
def in_background(run: Callable[[], None], stop: threading.Event, *, join_s: float) -> Iterator[None]:
    """Run a load's ``run`` in a daemon thread; on leaving, set ``stop`` and wait up to ``join_s`` for it."""
    thread = threading.Thread(target=run, name="signals-load", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=join_s)
