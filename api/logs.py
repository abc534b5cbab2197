"""The gateway's log output: one line per record, with the request id, written in blocks.

Every request logs its access line (api/middleware.py), so the cost of a record is paid per
request. Measured on the 2-core machine, a record through the standard handler cost ~17 us of
CPU: the record's creation looked up the caller's frame, thread and process names the format
never prints, the formatter rebuilt the timestamp with ``strftime``, and the handler made one
``write`` system call per line. Here the record skips what the format does not print, the
timestamp text is reused within a second, and lines are written in blocks: when
``BUFFER_LINES`` wait, when a WARNING or worse arrives (it goes out at once, after the lines
before it, so order is kept), every ``FLUSH_INTERVAL_S`` from a background thread (a quiet
gateway's lines still appear within a second), and at exit. The line format is unchanged.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Final, TextIO

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
BUFFER_LINES: Final = 64
FLUSH_INTERVAL_S: Final = 1.0


class SecondCachedFormatter(logging.Formatter):
    """``logging.Formatter`` with the ``asctime`` text (to the second) made once per second."""

    def __init__(self, fmt: str = LOG_FORMAT) -> None:
        super().__init__(fmt)
        self._second = -1
        self._text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        second = int(record.created)
        if second != self._second:  # a race between threads only makes the same text twice
            self._text, self._second = time.strftime(self.default_time_format, self.converter(record.created)), second
        return f"{self._text},{int(record.msecs):03d}"  # logging.Formatter's default_msec_format, "%s,%03d"


class BlockStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]  # generic only in typeshed
    """Formats each record when it is made (its request id is the current one) and writes lines in blocks."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        buffer_lines: int = BUFFER_LINES,
        flush_interval_s: float | None = FLUSH_INTERVAL_S,
    ) -> None:
        super().__init__(stream if stream is not None else sys.stderr)
        self.buffer_lines = buffer_lines
        self._lines: list[str] = []
        self._stopped = threading.Event()
        if flush_interval_s is not None:
            threading.Thread(target=self._flush_every, args=(flush_interval_s,), name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        with self.lock:  # type: ignore[union-attr]  # made by createLock() in Handler.__init__
            self._lines.append(line)
            if len(self._lines) >= self.buffer_lines or record.levelno >= logging.WARNING:
                self._write()

    def flush(self) -> None:
        """Write what waits (called by the flush thread, at exit by ``logging.shutdown``, and by tests)."""
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def close(self) -> None:
        self._stopped.set()
        super().close()

    def _write(self) -> None:
        if not self._lines:
            return
        text, self._lines = "".join(self._lines), []
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # a closed or broken stream: logging must never take a request down
            self.handleError(logging.makeLogRecord({"msg": "log write failed", "args": None}))

    def _flush_every(self, interval_s: float) -> None:
        while not self._stopped.wait(interval_s):
            self.flush()


def configure_logging(level: str, stream: TextIO | None = None) -> BlockStreamHandler:
    """Every line carries the request id (``-`` outside a request); returns the root handler."""
    from api.middleware import RequestIdFilter

    # The format prints none of these: skip looking them up for every record (logging's documented switches).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # type: ignore[attr-defined]  # no caller frame walk (no %(filename)s/%(lineno)d)
    handler = BlockStreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(SecondCachedFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return handler
