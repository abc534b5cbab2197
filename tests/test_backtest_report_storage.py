"""The tear sheet is stored gzip-compressed and served as the same HTML: gzip-encoded, plain, or from an older row.

The jobs' rows are written as the job writes them (``JobRecord.succeed``) into the gateway's own
database; the report is read back through ``GET /v1/backtests/{id}/report``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from sqlalchemy import update

from api.backtests import accepts_gzip, report_body
from feature_repo.backtests import REPORT_GZIP_PREFIX, backtest_jobs, decode_report, encode_report
from tests.backtest_fixtures import FakeClock, body, gateway, key, publish, queue_job, settings
from training.backtest_job import JobRecord

# Not ASCII on purpose (a minus sign, an accent, an emoji): the bytes must survive the round trip.
HTML = "<!doctype html><html><body><h1>Tear sheet − Société</h1>" + "<p>0.0123 📈</p>" * 4000 + "</body></html>"


def test_a_stored_report_decodes_to_the_same_html_and_is_smaller() -> None:
    stored = encode_report(HTML)
    assert stored.startswith(REPORT_GZIP_PREFIX) and len(stored) < len(HTML.encode()) / 10
    assert decode_report(stored) == HTML
    assert encode_report(HTML) == stored  # no timestamp in the gzip header: the same HTML stores the same
    assert decode_report(HTML) == HTML  # a row from before compression is the HTML itself


def test_a_damaged_compressed_report_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="not valid base64"):
        decode_report(REPORT_GZIP_PREFIX + "not base64!")
    with pytest.raises(ValueError, match="does not decompress"):
        decode_report(encode_report(HTML)[:-40])


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("deflate, *;q=0", False),
        ("", False),
        (None, False),
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding_is_read_with_its_weights(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def test_report_body_sends_the_stored_gzip_or_the_html() -> None:
    stored = encode_report(HTML)
    packed, headers = report_body(stored, gzip_ok=True)
    assert headers == {"Vary": "Accept-Encoding", "Content-Encoding": "gzip"}
    assert gzip.decompress(packed) == HTML.encode()
    plain, headers = report_body(stored, gzip_ok=False)
    assert plain == HTML.encode() and "Content-Encoding" not in headers
    old, headers = report_body(HTML, gzip_ok=True)  # an older row is sent as it is
    assert old == HTML.encode() and "Content-Encoding" not in headers


def test_the_report_route_answers_the_same_html_for_new_and_old_rows(tmp_path: Path) -> None:
    with gateway(settings(tmp_path)) as client:
        engine = client.app.state.services.engine  # type: ignore[attr-defined]
        publish(engine)
        h = key(client)
        new_id, old_id = "a" * 32, "b" * 32
        for job_id in (new_id, old_id):
            queue_job(engine, job_id, body())
        assert JobRecord(engine, new_id, FakeClock()).succeed({"label": "SYNTHETIC data: test"}, HTML)
        with engine.begin() as conn:  # a row the job wrote before reports were compressed
            conn.execute(
                update(backtest_jobs)
                .where(backtest_jobs.c.id == old_id)
                .values(state="succeeded", report=HTML, result={"label": "SYNTHETIC data: test"})
            )
        url = f"/v1/backtests/{new_id}/report"
        with client.stream("GET", url, headers={**h, "Accept-Encoding": "gzip"}) as raw:
            assert raw.status_code == 200 and raw.headers["content-encoding"] == "gzip"
            assert raw.headers["content-type"] == "text/html; charset=utf-8"
            assert raw.headers["vary"] == "Accept-Encoding"
            wire = b"".join(raw.iter_raw())
        assert len(wire) < len(HTML.encode()) / 10 and gzip.decompress(wire) == HTML.encode()
        plain = client.get(url, headers={**h, "Accept-Encoding": "identity"})
        assert plain.status_code == 200 and "content-encoding" not in plain.headers
        assert plain.content == HTML.encode() and int(plain.headers["content-length"]) == len(HTML.encode())
        assert client.get(url, headers=h).text == HTML  # httpx's own Accept-Encoding, decoded by it
        old = client.get(f"/v1/backtests/{old_id}/report", headers={**h, "Accept-Encoding": "gzip"})
        assert old.status_code == 200 and "content-encoding" not in old.headers and old.content == HTML.encode()
