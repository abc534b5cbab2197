"""The gateway's log output (api/logs.py): the same lines as the standard formatter, written in blocks, in order."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from api.logs import LOG_FORMAT, BlockStreamHandler, SecondCachedFormatter, configure_logging
from api.middleware import REQUEST_ID, RequestIdFilter

CREATED = (1_796_000_000.123, 1_796_000_000.987, 1_796_000_001.5)  # two records in one second, one in the next


def _record(message: str, created: float, level: int = logging.INFO) -> logging.LogRecord:
    record = logging.LogRecord("api.access", level, __file__, 1, message, None, None)
    record.created, record.msecs = created, (created - int(created)) * 1000
    return record


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide logging state: put it back for the other tests."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    saved_srcfile = logging._srcfile  # type: ignore[attr-defined]
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()
    root.handlers[:], root.level = saved[0], saved[1]
    logging.logThreads, logging.logProcesses, logging.logMultiprocessing = saved[2:]
    logging._srcfile = saved_srcfile  # type: ignore[attr-defined]


def test_lines_are_those_of_the_standard_formatter_with_the_request_id() -> None:
    standard, cached = logging.Formatter(LOG_FORMAT), SecondCachedFormatter()
    token = REQUEST_ID.set("req-42")
    try:
        for created in CREATED:
            record = _record("GET /v1/signals 200 3.1ms tenant=acme", created)
            assert RequestIdFilter().filter(record)
            assert cached.format(record) == standard.format(record)
            assert " INFO api.access [req-42] GET /v1/signals 200 3.1ms tenant=acme" in cached.format(record)
    finally:
        REQUEST_ID.reset(token)


def test_lines_wait_for_a_block_and_a_warning_writes_everything_before_it_in_order() -> None:
    stream = io.StringIO()
    handler = BlockStreamHandler(stream, buffer_lines=3, flush_interval_s=None)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.handle(_record("one", CREATED[0]))
    handler.handle(_record("two", CREATED[0]))
    assert stream.getvalue() == ""  # held: no write per line
    handler.handle(_record("three", CREATED[0]))
    assert stream.getvalue() == "INFO one\nINFO two\nINFO three\n"  # a full block goes out
    handler.handle(_record("four", CREATED[1]))
    handler.handle(_record("trouble", CREATED[1], logging.WARNING))
    assert stream.getvalue().endswith("INFO three\nINFO four\nWARNING trouble\n")  # at once, after what was held
    handler.handle(_record("five", CREATED[2]))
    handler.flush()  # the flush thread's, logging.shutdown's (at exit) and a test's way out
    assert stream.getvalue().endswith("WARNING trouble\nINFO five\n")
    handler.close()


def test_configure_logging_formats_with_the_request_id_and_skips_unprinted_lookups(restore_logging) -> None:
    stream = io.StringIO()
    handler = configure_logging("info", stream)
    assert logging.getLogger().handlers == [handler] and logging.getLogger().level == logging.INFO
    assert not (logging.logThreads or logging.logProcesses or logging.logMultiprocessing)
    token = REQUEST_ID.set("abc")
    try:
        logging.getLogger("api.access").info("GET %s %d", "/v1/signals", 200)
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("api.access").error("boom")  # outside a request; an error writes at once
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(" INFO api.access [abc] GET /v1/signals 200")
    assert lines[1].endswith(" ERROR api.access [-] boom")
