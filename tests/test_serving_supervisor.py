"""The launcher's restart policy and state machine, on a fake clock and fake processes (no sleep, no process).

The real processes are exercised in tests/test_serving_launcher_supervision.py.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

import pytest

from serving.supervisor import Backoff, Phase, Supervisor, exit_reason
from tests.clocks import Clock


@dataclass
class FakeProcess:
    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class FakeService:
    name: str
    process: FakeProcess | None = None


@dataclass
class FakeDriver:
    """Starts fake processes with increasing pids; readiness and start failures are set by the test."""

    ready_now: bool = False
    fail_start: bool = False
    started: list[int] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    next_pid: int = 100

    def start(self, service: FakeService) -> None:
        if self.fail_start:
            raise OSError("no such file")
        self.next_pid += 1
        service.process = FakeProcess(self.next_pid)
        self.started.append(self.next_pid)

    def ready(self, service: FakeService) -> bool:
        return self.ready_now

    def kill(self, service: FakeService) -> None:
        assert service.process is not None
        self.killed.append(service.process.pid)
        if service.process.returncode is None:
            service.process.returncode = -signal.SIGKILL


def test_backoff_doubles_from_one_second_to_thirty() -> None:
    backoff = Backoff(Clock())
    assert [backoff.failed() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_resets_only_after_sixty_seconds_ready() -> None:
    clock = Clock()
    backoff = Backoff(clock)
    assert [backoff.failed() for _ in range(3)] == [1, 2, 4]
    backoff.ready()
    clock.now += 59.9  # a crash loop with slow crashes is still a crash loop
    assert backoff.failed() == 8
    backoff.ready()
    clock.now += 60.0
    assert backoff.failed() == 1  # a healthy minute: back to the first delay
    clock.now += 3600.0  # time spent down (never ready) does not count as healthy
    assert backoff.failed() == 2


def test_exit_reasons_name_the_signal_or_the_status() -> None:
    assert exit_reason(-signal.SIGKILL) == "killed by SIGKILL"
    assert exit_reason(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert exit_reason(3) == "exited with status 3"
    assert exit_reason(0) == "exited with status 0"


def _supervisor(clock: Clock, driver: FakeDriver) -> tuple[Supervisor[FakeService], FakeService, list[str]]:
    service = FakeService("technical", FakeProcess(1))
    lines: list[str] = []
    return Supervisor([service], driver, clock=clock, log=lines.append, start_timeout_s=120.0), service, lines


def test_an_exited_child_is_restarted_after_its_backoff_and_up_only_once_ready() -> None:
    clock, driver = Clock(), FakeDriver()
    supervisor, service, lines = _supervisor(clock, driver)
    supervisor.step()
    assert lines == [] and driver.started == []  # a live child is left alone
    clock.now += 5.0
    assert service.process is not None
    service.process.returncode = -signal.SIGKILL
    supervisor.step()
    (child,) = supervisor.children
    assert child.phase is Phase.WAITING and driver.killed == [1]  # the rest of its group goes too
    assert lines[-1] == "technical (pid 1, up 5.0 s) killed by SIGKILL; restart 1 in 1 s"
    clock.now += 0.9
    supervisor.step()
    assert driver.started == []  # the back-off has not elapsed
    clock.now += 0.1
    supervisor.step()
    assert driver.started == [101] and child.phase is Phase.STARTING
    assert lines[-1] == "technical restarted (pid 101, restart 1); waiting for readiness"
    supervisor.step()
    assert child.phase is Phase.STARTING  # readiness is probed again after the restart
    driver.ready_now = True
    supervisor.step()
    assert child.phase is Phase.UP and lines[-1] == "technical ready again (pid 101, restart 1)"


def test_a_crash_loop_backs_off_and_the_status_is_logged() -> None:
    clock, driver = Clock(), FakeDriver()
    supervisor, service, lines = _supervisor(clock, driver)
    delays = []
    for status in (1, 2, 3):
        assert service.process is not None
        service.process.returncode = status  # dies before it is ever ready
        supervisor.step()
        delays.append(supervisor.children[0].due - clock.now)
        clock.now = supervisor.children[0].due
        supervisor.step()
    assert delays == [1.0, 2.0, 4.0]
    assert "exited with status 3; restart 3 in 4 s" in lines[-2]
    assert driver.started == [101, 102, 103]


def test_a_child_never_ready_is_killed_and_restarted() -> None:
    clock, driver = Clock(), FakeDriver()
    supervisor, service, lines = _supervisor(clock, driver)
    assert service.process is not None
    service.process.returncode = 1
    supervisor.step()
    clock.now += 1.0
    supervisor.step()  # restarted, never answers its probe
    clock.now += 120.0
    supervisor.step()
    assert supervisor.children[0].phase is Phase.STARTING
    clock.now += 0.5
    supervisor.step()
    assert driver.killed[-1] == 101 and supervisor.children[0].phase is Phase.WAITING
    assert "not ready after 120 s; restart 2 in 2 s" in lines[-1]


def test_a_child_that_cannot_be_started_is_retried_with_backoff() -> None:
    clock, driver = Clock(), FakeDriver(fail_start=True)
    supervisor, service, lines = _supervisor(clock, driver)
    assert service.process is not None
    service.process.returncode = 0
    supervisor.step()
    clock.now += 1.0
    supervisor.step()
    assert lines[-1] == "technical could not be started (no such file); restart 2 in 2 s"
    driver.fail_start = False
    clock.now += 2.0
    supervisor.step()
    assert driver.started == [101] and supervisor.children[0].phase is Phase.STARTING


def test_run_steps_until_interrupted() -> None:
    clock, driver = Clock(), FakeDriver()
    supervisor, _, _ = _supervisor(clock, driver)
    ticks: list[float] = []

    def sleep(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        supervisor.run(sleep=sleep, tick_s=0.25)
    assert ticks == [0.25, 0.25, 0.25]
