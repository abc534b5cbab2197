"""Keep the embedded stack's processes running, the way a kubelet keeps a pod's containers running.

A child that exits (crash, OOM kill, ``kill -9``) is restarted after an exponential back-off (1 s
doubling to 30 s, back to 1 s once it has been ready for 60 s: Kubernetes' CrashLoopBackOff with
shorter constants), the reason is logged (the signal or the exit status), and it counts as up
again only once its readiness probe answers. Nothing here sleeps or reads the wall clock on its
own: the clock and the process operations are injected, so the policy and the state machine are
unit-tested without a process or a sleep (``tests/test_serving_supervisor.py``).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, Generic, NoReturn, Protocol, TypeVar

INITIAL_BACKOFF_S: Final = 1.0
MAX_BACKOFF_S: Final = 30.0
RESET_AFTER_S: Final = 60.0
START_TIMEOUT_S: Final = 120.0
TICK_S: Final = 0.25


@dataclass
class Backoff:
    """The restart delays of one child: ``initial_s``, doubling up to ``max_s``.

    The delay goes back to ``initial_s`` when the child exits after being ready for at least
    ``reset_after_s`` (a crash after a long healthy run is not a crash loop).
    """

    clock: Callable[[], float]
    initial_s: float = INITIAL_BACKOFF_S
    max_s: float = MAX_BACKOFF_S
    reset_after_s: float = RESET_AFTER_S
    _next_s: float = field(init=False)
    _ready_since: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._next_s = self.initial_s

    def ready(self) -> None:
        """The child answered its readiness probe now."""
        self._ready_since = self.clock()

    def failed(self) -> float:
        """The child exited (or never became ready) now: seconds to wait before starting it again."""
        if self._ready_since is not None and self.clock() - self._ready_since >= self.reset_after_s:
            self._next_s = self.initial_s
        self._ready_since = None
        delay = self._next_s
        self._next_s = min(self.max_s, delay * 2)
        return delay


def exit_reason(returncode: int) -> str:
    """``killed by SIGKILL`` for a signal (Popen's negative status), ``exited with status N`` otherwise."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Process(Protocol):
    """What the supervisor reads of a child process (``subprocess.Popen`` has it)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


class Supervised(Protocol):
    """A named service whose current process (``None`` before the first start) the driver sets."""

    @property
    def name(self) -> str: ...

    @property
    def process(self) -> Process | None: ...


S = TypeVar("S", bound=Supervised)
S_contra = TypeVar("S_contra", bound=Supervised, contravariant=True)


class Driver(Protocol[S_contra]):
    """The process operations, injected so the state machine runs without processes in tests."""

    def start(self, service: S_contra) -> None:
        """Start a new process for ``service`` (sets ``service.process``); may raise OSError."""

    def ready(self, service: S_contra) -> bool:
        """One readiness probe (a short HTTP GET in the launcher)."""

    def kill(self, service: S_contra) -> None:
        """SIGKILL what is left of the service's process group and reap it."""


class Phase(Enum):
    UP = "up"  # ready (or ready when handed over), watched for an exit
    STARTING = "starting"  # restarted, waiting for its readiness probe
    WAITING = "waiting"  # exited, waiting for its back-off to elapse


@dataclass
class Child(Generic[S]):
    """The supervisor's view of one service."""

    service: S
    backoff: Backoff
    phase: Phase
    since: float  # when the current phase (or the current process) began
    due: float = 0.0  # WAITING: when to start again
    restarts: int = 0


def _log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} supervisor: {line}", file=sys.stderr, flush=True)


class Supervisor(Generic[S]):
    """Restarts the children of a running stack; call :meth:`step` periodically (or :meth:`run`)."""

    def __init__(
        self,
        services: Sequence[S],
        driver: Driver[S],
        *,
        clock: Callable[[], float] = time.monotonic,
        log: Callable[[str], None] = _log,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.driver = driver
        self.clock = clock
        self.log = log
        self.start_timeout_s = start_timeout_s
        now = clock()
        # The launcher hands the stack over once every service has reported ready.
        self.children = [Child(s, Backoff(clock), Phase.UP, now) for s in services]
        for child in self.children:
            child.backoff.ready()

    def step(self) -> None:
        """Look at every child once: notice exits, start those whose back-off elapsed, probe the starting."""
        for child in self.children:
            self._step(child)

    def run(self, sleep: Callable[[float], None] = time.sleep, tick_s: float = TICK_S) -> NoReturn:
        """Supervise until interrupted (the launcher's SIGTERM/Ctrl-C handler ends it)."""
        while True:
            self.step()
            sleep(tick_s)

    def _step(self, child: Child[S]) -> None:
        now = self.clock()
        if child.phase is Phase.WAITING:
            if now >= child.due:
                self._start(child, now)
            return
        process = child.service.process
        code = None if process is None else process.poll()
        if process is None or code is not None:
            self._failed(child, now, "has no process" if code is None else exit_reason(code))
        elif child.phase is Phase.STARTING:
            if self.driver.ready(child.service):
                child.phase, child.since = Phase.UP, now
                child.backoff.ready()
                self.log(f"{child.service.name} ready again (pid {process.pid}, restart {child.restarts})")
            elif now - child.since > self.start_timeout_s:
                self._failed(child, now, f"not ready after {self.start_timeout_s:.0f} s")

    def _failed(self, child: Child[S], now: float, reason: str) -> None:
        process = child.service.process
        # Like a container's teardown: nothing of the old process group survives it (workers, or a
        # process that never became ready), so the new one can bind the same port.
        self.driver.kill(child.service)
        delay = child.backoff.failed()
        ran = process is not None and child.phase is not Phase.WAITING
        where = f" (pid {process.pid}, up {now - child.since:.1f} s)" if ran and process is not None else ""
        self.log(f"{child.service.name}{where} {reason}; restart {child.restarts + 1} in {delay:g} s")
        child.phase, child.since, child.due = Phase.WAITING, now, now + delay

    def _start(self, child: Child[S], now: float) -> None:
        child.restarts += 1
        try:
            self.driver.start(child.service)
        except OSError as e:
            self._failed(child, now, f"could not be started ({e})")
            return
        child.phase, child.since = Phase.STARTING, now
        process = child.service.process
        pid = process.pid if process is not None else "?"
        self.log(f"{child.service.name} restarted (pid {pid}, restart {child.restarts}); waiting for readiness")
