"""``make test`` builds the images while the tests that do not need them run (a pytest plugin).

With ``PORTFOLIO_OS_BUILD_IMAGES=background`` (what ``make test`` sets), the run starts
``scripts/images.py`` as it begins, moves the tests marked ``images`` to the end, and those tests
wait for the build before they read ``build/images.json``. On a fresh machine the cold build and
the rest of the suite each take the better part of half an hour on two cores; side by side they
share the machine's idle time (downloads, layer writes, servers starting) instead of adding up.

A build that fails fails the tests that need it, with the build log's last lines; a run that ends
early stops the build. Without the variable nothing is built and the image tests read whatever
``make images`` built last.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
MODE_ENV: Final = "PORTFOLIO_OS_BUILD_IMAGES"
ARGS_ENV: Final = "IMAGES_ARGS"
LOG: Final = ROOT / "build" / "images-make.log"
TIMINGS: Final = ROOT / "build" / "images-build.json"  # scripts/images.py writes it beside its manifest
MARKER: Final = "images"
TAIL_LINES: Final = 40


class ImagesBuildFailed(AssertionError):
    """The background ``scripts/images.py`` exited non-zero; the message carries its log's tail."""


@dataclass
class BackgroundBuild:
    """One ``scripts/images.py`` run beside the tests."""

    process: subprocess.Popen[bytes]
    log: Path
    _out: IO[bytes]

    @classmethod
    def start(cls, command: list[str], log: Path = LOG) -> BackgroundBuild:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("wb")
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return cls(process, log, out)

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait(self) -> None:
        """Block until the build ends; raise :class:`ImagesBuildFailed` when it failed."""
        code = self.process.wait()
        self._out.close()
        if code != 0:
            raise ImagesBuildFailed(f"the image build exited {code} (full log: {self.log}):\n{self.tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._out.close()


@dataclass
class _Running:
    """The build this pytest process started (at most one)."""

    build: BackgroundBuild | None = None


_running = _Running()


def wait_for_images() -> None:
    """What a test that needs the built images calls first (a no-op when no build runs beside the tests)."""
    if _running.build is not None:
        _running.build.wait()


def pytest_configure(config: pytest.Config) -> None:
    mode = os.environ.get(MODE_ENV, "")
    if mode not in ("", "background"):
        raise pytest.UsageError(f"{MODE_ENV}={mode!r}: use 'background' (or leave it unset)")
    # Only the controlling process builds (pytest-xdist workers carry a workerinput attribute).
    if mode == "background" and not hasattr(config, "workerinput") and _running.build is None:
        images = [sys.executable, str(ROOT / "scripts" / "images.py"), *shlex.split(os.environ.get(ARGS_ENV, ""))]
        _running.build = BackgroundBuild.start(images)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Wait for the build before the first image test's timeout starts (pytest-timeout's timer is inside)."""
    if _running.build is not None and _running.build.process.poll() is None and item.get_closest_marker(MARKER):
        reporter = item.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"waiting for the image build beside the tests (log: {_running.build.log.relative_to(ROOT)})"
            )
        _running.build.process.wait()  # the test's own wait_for_images() then reports a failed build
    yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that need the images last (a stable move: their own order is kept)."""
    items.sort(key=lambda item: item.get_closest_marker(MARKER) is not None)


def _summary(timings: Path) -> str | None:
    """One line from scripts/images.py's timings: the whole build and each image (None when absent)."""
    try:
        data = json.loads(timings.read_text())
        images = ", ".join(f"{name} {image['seconds']} s" for name, image in data["images"].items())
        load = f"load {data['load_before']} -> {data['load_after']}"
        return f"{data['total_s']} s in all (base {data['base_s']} s; {images}); {load}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _running.build is not None and _running.build.process.poll() is not None:
        terminalreporter.write_sep("-", f"images built beside the tests (log: {_running.build.log.relative_to(ROOT)})")
        terminalreporter.write_line(_summary(TIMINGS) or _running.build.tail(12))


def pytest_unconfigure(config: pytest.Config) -> None:
    """A run that ends before the image tests (-x, Ctrl-C, a -k selection) leaves no build behind."""
    if _running.build is not None:
        _running.build.stop()
        _running.build = None
