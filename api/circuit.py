"""A circuit breaker per model: stop calling a failing server, probe it again after a cool-down.

Everything runs on the event loop, so no lock is needed: state changes happen between awaits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import IntEnum

from prometheus_client import Gauge


class CircuitState(IntEnum):
    """Values exported as ``portfolio_os_gateway_circuit_state``."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Open after ``threshold`` consecutive failures; after ``reset_s`` let one probe through.

    A successful probe closes the circuit; a failed one opens it for another ``reset_s``. A probe
    that never reports back (a cancelled task) is given up after ``reset_s`` so a circuit cannot
    stay half-open forever.
    """

    def __init__(
        self,
        model: str,
        threshold: int,
        reset_s: float,
        gauge: Gauge,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model = model
        self.threshold = threshold
        self.reset_s = reset_s
        self._gauge = gauge.labels(model=model)
        self.clock = clock  # public so a test can move time past the cool-down instead of sleeping
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started: float | None = None
        self._state = CircuitState.CLOSED
        self._gauge.set(CircuitState.CLOSED)

    @property
    def state(self) -> CircuitState:
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now (claims the probe slot when half-open)."""
        now = self.clock()
        if self._state is CircuitState.CLOSED:
            return True
        if self._state is CircuitState.OPEN:
            if now - self._opened_at < self.reset_s:
                return False
            self._set(CircuitState.HALF_OPEN)
            self._probe_started = now
            return True
        if self._probe_started is None or now - self._probe_started >= self.reset_s:
            self._probe_started = now
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._probe_started = None
        self._set(CircuitState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is CircuitState.HALF_OPEN or self._failures >= self.threshold:
            self._opened_at = self.clock()
            self._probe_started = None
            self._set(CircuitState.OPEN)

    def _set(self, state: CircuitState) -> None:
        self._state = state
        self._gauge.set(int(state))
