"""A clock a test moves by hand, for whatever takes a ``clock`` callable of monotonic seconds
(caches, circuit breakers, the supervisor): no test waits on the wall clock."""

from __future__ import annotations


class Clock:
    """Monotonic seconds, set by the test (``clock.now += 5``); starts at ``now``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
